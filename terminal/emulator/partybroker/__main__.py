"""``python -m terminal.emulator.partybroker``: run the Partybroker API emulator (options in cli.py)."""

import sys

from terminal.emulator.partybroker.cli import main

if __name__ == "__main__":
    sys.exit(main())
