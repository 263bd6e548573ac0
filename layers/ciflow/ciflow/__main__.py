"""`python -m ciflow …` (with layers/ciflow on PYTHONPATH): the operator CLI, see `ciflow.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
