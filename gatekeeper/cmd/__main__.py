"""`python -m gatekeeper.cmd`: the `gatekeeper` command without its installed script."""

import sys

from gatekeeper.cmd import main

sys.exit(main())
