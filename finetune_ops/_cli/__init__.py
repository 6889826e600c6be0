"""The ``finetune-ops`` command line.

It needs the optional ``cli`` extra (click for the commands, rich for progress
bars and tables). Nothing here imports either until :func:`main` runs, so
``import finetune_ops`` never needs them, and without them the command says how
to install them instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

__all__ = ["INSTALL_HINT", "main"]

INSTALL_HINT = (
    "finetune-ops: the command line needs click and rich; "
    "install them with: pip install 'finetune-ops[cli]'"
)


def _missing_extras() -> list[str]:
    return [name for name in ("click", "rich") if find_spec(name) is None]


def main() -> None:
    """Run the ``finetune-ops`` command; exit 2 with an install hint without click or rich."""
    from . import _signals

    _signals.install()
    try:
        if _missing_extras():
            print(INSTALL_HINT, file=sys.stderr)
            raise SystemExit(2)
        from ._app import cli
    except KeyboardInterrupt as interrupt:
        # Ctrl-C (or SIGTERM) while the commands were still loading: no traceback.
        print("Interrupted.", file=sys.stderr)
        signum = interrupt.signum if isinstance(interrupt, _signals.Stopped) else 2
        raise SystemExit(128 + signum) from None
    cli(prog_name="finetune-ops")
