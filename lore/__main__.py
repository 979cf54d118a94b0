"""`python -m lore ...` (also what torchrun runs: `torchrun --nproc_per_node=2 -m lore train ...`)."""

import sys

from .cli import main

sys.exit(main())
