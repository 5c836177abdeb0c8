"""``python -m agentloop.cli``: the same as the ``agentloop`` command."""

import sys

from agentloop.cli import main

sys.exit(main())
