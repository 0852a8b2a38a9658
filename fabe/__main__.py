"""`python -m fabe ...` entry point."""

import sys

from fabe.cli import main

sys.exit(main())
