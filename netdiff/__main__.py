"""``python -m netdiff``."""

import sys

from netdiff.cli import main

sys.exit(main())
