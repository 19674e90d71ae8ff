"""`python -m kiln` runs the `kiln` command (see kiln/cli.py)."""
from kiln.cli import main

raise SystemExit(main())
