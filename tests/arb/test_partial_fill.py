"""A V3 hop the pool cannot fill completely is infeasible: the executor contract reverts with
PartialFill then, so the search must never price such an amount as if it went through."""
from __future__ import annotations

import pytest

from engine.arb.v3 import PartialFill, V3Pool, get_sqrt_ratio_at_tick


def thin_pool() -> V3Pool:
    # one narrow position around the price: little to sell before the price leaves the range
    return V3Pool.from_liquidity_ranges("0xP", "0xA", "0xB", 500, get_sqrt_ratio_at_tick(0),
                                        [(-100, 100, 10**18)])


def test_partial_fill_raises_for_route_quotes_but_quoter_reports_partial():
    p = thin_pool()
    small = 10**15
    assert p.amount_out("0xA", small) == p.quote_exact_in("0xA", small) > 0
    huge = 10**24
    partial = p.quote_exact_in("0xA", huge)          # QuoterV1 semantics: the partial output
    assert 0 < partial < huge
    with pytest.raises(PartialFill):
        p.amount_out("0xA", huge)
    with pytest.raises(PartialFill):
        p.quote("0xB", huge)
    with pytest.raises(ValueError):                    # callers catching ValueError see it too
        p.quote("0xA", huge)
