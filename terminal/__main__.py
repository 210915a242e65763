"""``python -m terminal`` is the ``taptill`` command."""

import sys

from terminal.cli import main

sys.exit(main())
