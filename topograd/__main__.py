"""`python -m topograd ...` runs the command line, as the `topograd` script does."""

import sys

from topograd.dsl.cli import main

if __name__ == "__main__":
    sys.exit(main())
