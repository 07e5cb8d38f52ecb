"""``python -m imssa`` is the ``imssa`` command."""

import sys

from imssa.cli import main

sys.exit(main())
