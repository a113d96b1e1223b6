"""`python -m rnnlab` (this is what `torchrun -m rnnlab train ...` runs)."""

from rnnlab.cli import main

raise SystemExit(main())
