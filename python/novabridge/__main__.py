"""``python -m novabridge`` is the ``novabridge`` command."""

import sys

from novabridge.cli import main

sys.exit(main())
