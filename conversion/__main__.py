"""``python -m conversion SRC DST --to FMT``: the xlmr-convert command."""

import sys

from .cli import main

sys.exit(main())
