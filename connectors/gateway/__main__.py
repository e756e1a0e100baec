"""``python -m connectors.gateway``: the same as ``emotune serve``."""

import sys

from connectors.gateway.server import main

sys.exit(main())
