"""``python -m terminal.emulator.brink``: run the PAR Brink Ordering service emulator (options in cli.py)."""

import sys

from terminal.emulator.brink.cli import main

if __name__ == "__main__":
    sys.exit(main())
