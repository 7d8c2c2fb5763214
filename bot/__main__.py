"""`python -m bot`: the command line (the same as the `storeolis-bridge` console script)."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main())
