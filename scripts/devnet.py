"""The devnet moved to engine/devnet (a package: anvil, deploy, devnet, traffic, cli); this shim
keeps `scripts.devnet` and `python scripts/devnet.py` working for code that still uses them.
New code imports engine.devnet."""
from __future__ import annotations

import sys

from engine.devnet import *  # noqa: F401,F403  (the public names, listed in engine.devnet.__all__)
from engine.devnet import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
