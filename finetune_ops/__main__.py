"""``python -m finetune_ops``: the ``finetune-ops`` command line.

Without the ``cli`` extra (click and rich) it prints a one-line hint to install
``finetune-ops[cli]`` and exits with status 2.
"""

from finetune_ops._cli import main

if __name__ == "__main__":
    main()
