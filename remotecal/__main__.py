"""`python -m remotecal ...`: the `remotecal` command, where the console script is not on PATH."""

import sys

from remotecal.cli import main

sys.exit(main())
