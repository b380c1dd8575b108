"""``python -m musicgym``: the ``musicgym`` command."""

import sys

from musicgym.cli import main

sys.exit(main())
