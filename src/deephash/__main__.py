"""``python -m deephash``: the same as the ``deephash`` command."""

import sys

from deephash.cli import main

sys.exit(main())
