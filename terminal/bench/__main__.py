"""`python -m terminal.bench`: runs every measurement and prints the JSON report (see terminal.bench.run)."""

import sys

from terminal.bench.run import main

sys.exit(main())
