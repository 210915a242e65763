"""``python -m terminal.emulator.yourbarmate``: send yourbarmate webhook events (options in cli.py)."""

import sys

from terminal.emulator.yourbarmate.cli import main

if __name__ == "__main__":
    sys.exit(main())
