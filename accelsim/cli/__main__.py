"""`python -m accelsim.cli ...`: the `accelsim` script's entry point (as `python -m accelsim`)."""
from accelsim.cli import main

raise SystemExit(main())
