"""``python -m moe_ids.cli``: the same as the ``moe-ids`` command."""

import sys

from moe_ids.cli import main

sys.exit(main())
