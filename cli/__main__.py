"""``python -m cli``: the ``callshield`` command."""

import sys

from cli.main import main

sys.exit(main())
