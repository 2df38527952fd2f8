"""Uniswap V2 math against brute force: the pair's own K check decides what is right."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from engine.arb.v2 import InsufficientLiquidity, V2Pool, get_amount_in, get_amount_out

FEES = st.sampled_from([30, 25, 5, 100, 0])


def k_ok(r_in: int, r_out: int, a: int, y: int, fee: int, d: int = 10_000) -> bool:
    """UniswapV2Pair.swap's check: balanceAdjusted product >= reserves product."""
    return (r_in * d + a * (d - fee)) * (r_out - y) * d >= r_in * r_out * d * d


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**30), st.integers(1, 10**30), st.integers(1, 10**30), FEES)
def test_amount_out_is_the_largest_output_the_pair_accepts(a, r_in, r_out, fee):
    y = get_amount_out(a, r_in, r_out, fee)
    assert 0 <= y < r_out
    assert k_ok(r_in, r_out, a, y, fee)
    assert not k_ok(r_in, r_out, a, y + 1, fee)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**30), st.integers(2, 10**30), st.data(), FEES)
def test_amount_in_is_minimal_up_to_the_library_plus_one(r_in, r_out, data, fee):
    y = data.draw(st.integers(1, r_out - 1))
    a = get_amount_in(y, r_in, r_out, fee)
    assert get_amount_out(a, r_in, r_out, fee) >= y  # enough, and the pair accepts it
    assert k_ok(r_in, r_out, a, y, fee)
    # the library's "+ 1" asks one wei more than the minimum only when its division is exact
    minimal = a - 1 if a > 1 and get_amount_out(a - 1, r_in, r_out, fee) >= y else a
    assert a - minimal in (0, 1)
    if minimal > 1:
        assert get_amount_out(minimal - 1, r_in, r_out, fee) < y
    if a - minimal == 1:
        assert (r_in * y * 10_000) % ((r_out - y) * (10_000 - fee)) == 0


def test_brute_force_small_reserves():
    for r_in in range(1, 40):
        for r_out in range(2, 40, 3):
            for y in range(1, r_out):
                a = get_amount_in(y, r_in, r_out)
                brute = next(x for x in range(1, 10**6) if get_amount_out(x, r_in, r_out) >= y)
                assert a - brute in (0, 1)


def test_equals_the_library_997_over_1000():
    for a, r0, r1 in [(10**18, 10**21, 2 * 10**24), (12345, 678910, 111213), (1, 10**6, 10**6)]:
        assert get_amount_out(a, r0, r1, 30) == a * 997 * r1 // (r0 * 1000 + a * 997)
        assert get_amount_in(a, r1, r0 * 10, 30) == r1 * a * 1000 // ((r0 * 10 - a) * 997) + 1


def test_reverts_are_errors():
    with pytest.raises(InsufficientLiquidity):
        get_amount_out(0, 1, 1)
    with pytest.raises(InsufficientLiquidity):
        get_amount_in(10, 100, 10)


def test_pool_quotes_both_directions_and_updates():
    p = V2Pool("0xP", "0xA", "0xB", 10**21, 2 * 10**24, 30)
    out = p.quote("0xA", 10**18)
    assert out == get_amount_out(10**18, 10**21, 2 * 10**24)
    assert p.amount_in("0xB", out) <= 10**18
    q = p.after_swap("0xA", 10**18)
    assert (q.reserve0, q.reserve1) == (10**21 + 10**18, 2 * 10**24 - out)
    assert q.reserve0 * q.reserve1 >= p.reserve0 * p.reserve1
    back = p.quote("0xB", 10**21)
    assert back == get_amount_out(10**21, 2 * 10**24, 10**21)
