"""`python -m scolio_core.cli` runs the `scolio` command."""

import sys

from scolio_core.cli.main import main

sys.exit(main())
