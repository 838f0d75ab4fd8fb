"""``python -m tracking_core``: the ``tracking`` command."""

import sys

from .cli import main

sys.exit(main())
