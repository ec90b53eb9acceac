"""``python -m xlmr_demo``: the same as the ``xlmr-demo`` console script."""

import sys

from .cli import main

sys.exit(main())
