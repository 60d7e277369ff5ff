"""`python -m alsatian_hf ...` is the `alsatian-hf` command, so launchers that take a module run it:
`accelerate launch -m alsatian_hf search ...`, `torchrun -m alsatian_hf search ...`."""

import sys

from .cli import main


sys.exit(main())
