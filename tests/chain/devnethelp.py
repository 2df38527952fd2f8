"""The three-chain devnet for tests: the session fixture (conftest.py) and the modules that keep
a devnet of their own (ingresshelp.own_devnet) start it the same way.  A module of its own, not
conftest, because several test folders have a conftest (see tests/arb/arbhelp.py)."""
from __future__ import annotations

import pytest

from engine.chain.contracts import toolchain_missing


def start_devnet():
    """The devnet for as long as the generator is held; skips without the toolchain."""
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    from engine.devnet import Devnet
    with Devnet.start(("arbitrum", "base", "polygon"), seed=0) as net:
        yield net
