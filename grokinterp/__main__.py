"""``python -m grokinterp``: the same as the ``grokinterp`` command."""

import sys

from .cli import main

sys.exit(main())
