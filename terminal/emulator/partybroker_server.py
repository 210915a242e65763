"""Old module name of the Partybroker emulator, kept so its old `python -m` command still runs."""

import sys

from terminal.emulator.partybroker.cli import main

if __name__ == "__main__":
    sys.exit(main())
