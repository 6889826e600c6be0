"""The public face: what `finetune_ops` exports is exactly what it documents."""

from __future__ import annotations

import importlib.metadata
import types

import finetune_ops
import finetune_ops.testing


def _public(module: types.ModuleType) -> set[str]:
    # dir() and getattr(), not vars(): the package loads its names on first use.
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }


def test_all_matches_namespace() -> None:
    """__all__ lists every public name and nothing else, sorted."""
    assert set(finetune_ops.__all__) == _public(finetune_ops) | {"__version__"}
    assert finetune_ops.__all__ == sorted(finetune_ops.__all__, key=lambda n: (n != n.upper(), n))


def test_testing_all_matches_namespace() -> None:
    """The simulator's package exports what it names."""
    assert set(finetune_ops.testing.__all__) == _public(finetune_ops.testing)


def test_exported_objects_belong_to_the_package() -> None:
    """Every exported class or function is defined inside finetune_ops (no leaked dependency)."""
    for name in finetune_ops.__all__:
        value = getattr(finetune_ops, name)
        module = getattr(value, "__module__", None)
        if isinstance(value, type) or callable(value):
            assert module is not None
            assert module.startswith("finetune_ops"), name


def test_version_from_metadata() -> None:
    """__version__ comes from the installed distribution."""
    assert finetune_ops.__version__ == importlib.metadata.version("finetune-ops")


def test_import_needs_no_cli_extras() -> None:
    """Importing the library loads neither click nor rich."""
    import subprocess
    import sys

    code = "import sys, finetune_ops; print('click' in sys.modules or 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
