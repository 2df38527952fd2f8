"""Fixtures for the arb tests."""
from __future__ import annotations

import pytest

from arbhelp import W
from engine.arb.profit import GasModel


@pytest.fixture
def free_gas() -> GasModel:
    """Gas that costs nothing, to test the pool math and loan fees alone."""
    return GasModel.arbitrum(W, 0)
