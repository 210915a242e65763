"""Old module name of the wallet emulator, kept so `python -m terminal.emulator.wallet_server` still runs."""

import sys

from terminal.emulator.wallet.cli import main

if __name__ == "__main__":
    sys.exit(main())
