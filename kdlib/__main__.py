"""``python -m kdlib`` runs the command line."""

import sys

from kdlib.cli import main

sys.exit(main())
