"""``python -m terminal.emulator.wallet``: run the wallet API emulator (options in cli.py)."""

import sys

from terminal.emulator.wallet.cli import main

if __name__ == "__main__":
    sys.exit(main())
