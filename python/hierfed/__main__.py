"""``python -m hierfed``: the ``hierfed`` command."""

import sys

from .cli import main

sys.exit(main())
