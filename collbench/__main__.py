"""``python -m collbench`` is the same as the ``collbench`` command."""

import sys

from .cli import main

sys.exit(main())
