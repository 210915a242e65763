"""``python -m terminal.emulator.ready2order``: run the ready2order API emulator (options in cli.py)."""

import sys

from terminal.emulator.ready2order.cli import main

if __name__ == "__main__":
    sys.exit(main())
