"""`python3 -m forge`: the forge command without its console script installed."""

import sys

from .cli import main

sys.exit(main())
