"""Uniswap V3 math against brute force and exact rational arithmetic.

The reference swap below works in Fractions over the same tick prices: it is what the pool would
pay with infinitely precise arithmetic.  The contract rounds against the trader in every step, so
its output must never exceed the reference and must stay within a few wei per step of it.
"""
from __future__ import annotations

import random
from decimal import Decimal, getcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings, strategies as st

from engine.arb import v3
from engine.arb.v3 import (MAX_SQRT_RATIO, MAX_TICK, MIN_SQRT_RATIO, MIN_TICK, Q96, V3Pool,
                           compute_swap_step, get_sqrt_ratio_at_tick, get_tick_at_sqrt_ratio)

TICKS = st.integers(MIN_TICK, MAX_TICK - 1)


@settings(max_examples=500, deadline=None)
@given(TICKS)
def test_tick_round_trip(t):
    s = get_sqrt_ratio_at_tick(t)
    assert get_tick_at_sqrt_ratio(s) == t
    assert get_tick_at_sqrt_ratio(get_sqrt_ratio_at_tick(t + 1) - 1) == t


@settings(max_examples=500, deadline=None)
@given(st.integers(MIN_SQRT_RATIO, MAX_SQRT_RATIO - 1))
def test_tick_at_sqrt_ratio_is_the_greatest_tick_not_above(price):
    t = get_tick_at_sqrt_ratio(price)
    assert get_sqrt_ratio_at_tick(t) <= price
    assert t == MAX_TICK or get_sqrt_ratio_at_tick(t + 1) > price


def test_bounds_and_monotone():
    assert get_sqrt_ratio_at_tick(0) == Q96
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    for bad in (MIN_TICK - 1, MAX_TICK + 1):
        with pytest.raises(v3.V3MathError):
            get_sqrt_ratio_at_tick(bad)
    for bad in (MIN_SQRT_RATIO - 1, MAX_SQRT_RATIO):
        with pytest.raises(v3.V3MathError):
            get_tick_at_sqrt_ratio(bad)
    prev = 0
    for t in range(-5000, 5000, 7):
        s = get_sqrt_ratio_at_tick(t)
        assert s > prev
        prev = s


@settings(max_examples=200, deadline=None)
@given(TICKS)
def test_sqrt_ratio_matches_high_precision(t):
    getcontext().prec = 80
    exact = (Decimal("1.0001") ** t).sqrt() * (Decimal(2) ** 96)
    got = Decimal(get_sqrt_ratio_at_tick(t))
    assert abs(got - exact) / exact < Decimal("1e-15") or abs(got - exact) <= 1


# ---------------------------------------------------------------------------- reference swap
def reference_exact_in(pool: V3Pool, zero_for_one: bool, amount_in: int) -> Fraction:
    """Output of an exact-input swap with infinitely precise arithmetic (same ticks, same fee)."""
    f = Fraction(1_000_000 - pool.fee, 1_000_000)
    net = Fraction(amount_in) * f
    p = Fraction(pool.sqrt_price_x96)
    liquidity = pool.liquidity
    inited = sorted(pool.ticks)
    out = Fraction(0)
    tick = pool.tick
    while net > 0:
        if zero_for_one:
            below = [t for t in inited if t <= tick]
            t_next = below[-1] if below else MIN_TICK
            p_next = Fraction(get_sqrt_ratio_at_tick(t_next))
            if liquidity == 0:
                need = Fraction(0)
            else:
                need = liquidity * Q96 * (p - p_next) / (p * p_next)
            if need >= net:
                p_new = liquidity * Q96 * p / (liquidity * Q96 + net * p)
                out += liquidity * (p - p_new) / Q96
                return out
            out += liquidity * (p - p_next) / Q96
            net -= need
            if t_next == MIN_TICK:
                return out
            liquidity -= pool.ticks.get(t_next, 0)
            p, tick = p_next, t_next - 1
        else:
            above = [t for t in inited if t > tick]
            t_next = above[0] if above else MAX_TICK
            p_next = Fraction(get_sqrt_ratio_at_tick(t_next))
            need = liquidity * (p_next - p) / Q96
            if need >= net:
                p_new = p + net * Q96 / liquidity
                out += liquidity * Q96 * (p_new - p) / (p * p_new)
                return out
            out += liquidity * Q96 * (p_next - p) / (p * p_next)
            net -= need
            if t_next == MAX_TICK:
                return out
            liquidity += pool.ticks.get(t_next, 0)
            p, tick = p_next, t_next
    return out


def random_pool(rng: random.Random, fee: int = 3000, n_positions: int = 6) -> V3Pool:
    spacing = v3.TICK_SPACING_BY_FEE[fee]
    center = rng.randrange(-200_000, 200_000) // spacing * spacing
    positions = []
    for _ in range(n_positions):
        lo = center + rng.randrange(-300, 1) * spacing
        hi = center + rng.randrange(1, 300) * spacing
        positions.append((lo, hi, rng.randrange(10**15, 10**24)))
    # a full-range position, so a swap never runs out of liquidity
    lo_full, hi_full = (MIN_TICK // spacing + 1) * spacing, (MAX_TICK // spacing) * spacing
    positions.append((lo_full, hi_full, rng.randrange(10**12, 10**18)))
    price = get_sqrt_ratio_at_tick(center + rng.randrange(-50, 50) * spacing)
    price += rng.randrange(0, max(1, price // 10**4))
    return V3Pool.from_liquidity_ranges("0xP", "0xA", "0xB", fee, price, positions)


def out_per_wei_in(before: V3Pool, after: V3Pool, zero_for_one: bool) -> int:
    """How much output one wei of input is worth at the worse of the two prices (+1): rounding
    a wei of input, or of the fee, moves the output by about this much."""
    prices = [(Fraction(p.sqrt_price_x96, Q96) ** 2) for p in (before, after)]
    if not zero_for_one:
        prices = [1 / x for x in prices]
    return int(max(prices)) + 1


def active_liquidity(pool: V3Pool, tick: int) -> int:
    return sum(net for t, net in pool.ticks.items() if t <= tick)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.sampled_from([500, 3000, 10000, 100]),
       st.integers(1, 10**24))
def test_swap_never_pays_more_than_exact_arithmetic(seed, zero_for_one, fee, amount):
    pool = random_pool(random.Random(seed), fee)
    r = pool.swap(zero_for_one, amount)
    out = -(r.amount1 if zero_for_one else r.amount0)
    paid = r.amount0 if zero_for_one else r.amount1
    assume(paid == amount)  # the limit price was not hit
    ref = reference_exact_in(pool, zero_for_one, amount)
    assert out <= ref
    steps = r.ticks_crossed + 2 + abs(r.pool.tick - pool.tick) // (256 * pool.tick_spacing) + 1
    assert ref - out <= 4 * steps * out_per_wei_in(pool, r.pool, zero_for_one) + ref / 10**12


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.integers(1, 10**23))
def test_post_swap_state_is_consistent(seed, zero_for_one, amount):
    pool = random_pool(random.Random(seed))
    r = pool.swap(zero_for_one, amount)
    s = r.pool
    assert get_sqrt_ratio_at_tick(s.tick) <= s.sqrt_price_x96 <= get_sqrt_ratio_at_tick(s.tick + 1)
    assert s.liquidity == active_liquidity(pool, s.tick)
    if zero_for_one:
        assert r.amount0 > 0 >= r.amount1 and s.sqrt_price_x96 <= pool.sqrt_price_x96
    else:
        assert r.amount1 > 0 >= r.amount0 and s.sqrt_price_x96 >= pool.sqrt_price_x96


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.integers(10**6, 10**23), st.integers(2, 12))
def test_one_swap_versus_many_small_swaps(seed, zero_for_one, amount, parts):
    pool = random_pool(random.Random(seed))
    single = pool.swap(zero_for_one, amount)
    piece = amount // parts
    total_out, state = 0, pool
    for i in range(parts):
        a = piece if i < parts - 1 else amount - piece * (parts - 1)
        r = state.swap(zero_for_one, a)
        total_out += -(r.amount1 if zero_for_one else r.amount0)
        state = r.pool
    single_out = -(single.amount1 if zero_for_one else single.amount0)
    # splitting rounds against the trader once per piece: never better, and only wei worse
    assert total_out <= single_out + 1
    wei = out_per_wei_in(pool, single.pool, zero_for_one)
    assert single_out - total_out <= 4 * parts * (2 + single.ticks_crossed) * wei + single_out // 10**12


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.integers(1, 10**22))
def test_exact_output_then_exact_input(seed, zero_for_one, want):
    pool = random_pool(random.Random(seed))
    r = pool.swap(zero_for_one, -want)
    got = -(r.amount1 if zero_for_one else r.amount0)
    paid = r.amount0 if zero_for_one else r.amount1
    assume(got == want)
    back = pool.swap(zero_for_one, paid)
    assert -(back.amount1 if zero_for_one else back.amount0) >= want


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_output_is_monotone_in_input(seed, zero_for_one):
    rng = random.Random(seed)
    pool = random_pool(rng)
    amounts = sorted(rng.randrange(1, 10**23) for _ in range(8))
    outs = [pool.quote("0xA" if zero_for_one else "0xB", a) for a in amounts]
    assert outs == sorted(outs)


def test_price_limit_stops_the_swap():
    pool = random_pool(random.Random(7))
    limit = pool.sqrt_price_x96 - pool.sqrt_price_x96 // 1000
    r = pool.swap(True, 10**30, limit)
    assert r.pool.sqrt_price_x96 == limit and 0 < r.amount0 < 10**30
    with pytest.raises(v3.V3MathError):
        pool.swap(True, 10**18, pool.sqrt_price_x96 + 1)
    with pytest.raises(v3.V3MathError):
        pool.swap(True, 0)


def test_word_boundaries_are_steps():
    """Spacing 1, one position far away: the loop must walk word by word to reach it."""
    pool = V3Pool.from_liquidity_ranges("0xP", "0xA", "0xB", 100, get_sqrt_ratio_at_tick(0),
                                        [(-100, 100, 10**18), (-3000, 3000, 10**20)], tick_spacing=1)
    assert pool._next_initialized_tick_within_one_word(0, True) == (0, False)  # word [0, 255]
    assert pool._next_initialized_tick_within_one_word(-1, True) == (-100, True)
    assert pool._next_initialized_tick_within_one_word(-101, True) == (-256, False)
    assert pool._next_initialized_tick_within_one_word(-256, True) == (-256, False)
    assert pool._next_initialized_tick_within_one_word(-257, True) == (-512, False)
    assert pool._next_initialized_tick_within_one_word(0, False) == (100, True)
    assert pool._next_initialized_tick_within_one_word(100, False) == (255, False)
    assert pool._next_initialized_tick_within_one_word(255, False) == (511, False)
    assert pool._next_initialized_tick_within_one_word(-1, False) == (100, True)
    assert pool._next_initialized_tick_within_one_word(-3257, False) == (-3073, False)
    r = pool.swap(True, 10**19)
    assert r.ticks_crossed == 1 and -3000 < r.pool.tick < -100


def test_compute_swap_step_exact_out_caps_output():
    p = get_sqrt_ratio_at_tick(0)
    nxt, a_in, a_out, fee = compute_swap_step(p, get_sqrt_ratio_at_tick(-10), 10**18, -10**9, 3000)
    assert a_out == 10**9 and a_in > 0 and fee > 0 and nxt < p


def _loop_out(pool: V3Pool, zero_for_one: bool, amount: int) -> int:
    r = pool._swap(zero_for_one, amount, None, False)
    return -(r.amount1 if zero_for_one else r.amount0)


def _edges(pool: V3Pool, zero_for_one: bool) -> list[int]:
    """The gross inputs that take the cached steps exactly to their targets."""
    out, total, k = [], 0, 0
    while (step := pool._step(zero_for_one, k)) is not None:
        total += step[4]
        out.append(total)
        k += 1
    return out


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32), st.booleans(), st.sampled_from([500, 3000, 10000, 100]),
       st.integers(0, 9), st.floats(0.0, 1.0), st.integers(-3, 3), st.integers(2, 40))
def test_the_cached_step_quote_is_the_loop_to_the_wei(seed, zero_for_one, fee, k, share,
                                                      nudge, n_positions):
    """quote/amount_out add up the loop's whole steps from a cache and compute only the last
    one; the output must be the loop's at every amount: inside a step, at a step's edge (+-3
    wei) and past the cached steps (where the loop runs)."""
    pool = random_pool(random.Random(seed), fee, n_positions)
    edges = _edges(pool, zero_for_one)
    lo = edges[k - 1] if 0 < k <= len(edges) else 0
    hi = edges[k] if k < len(edges) else (edges[-1] * 2 if edges else 10**24)
    amount = max(1, lo + int((hi - lo) * share) + nudge)
    fast = pool._quote_in(zero_for_one, amount)
    loop = _loop_out(pool, zero_for_one, amount)
    if fast is not None:
        assert fast == loop, (amount, edges)
    token = pool.token0 if zero_for_one else pool.token1
    assert pool.quote_exact_in(token, amount) == loop


def test_the_cached_steps_are_taken_across_ticks_and_words_and_reset_with_the_state():
    rng = random.Random(7)
    taken = multi = 0
    for _ in range(300):
        pool = random_pool(rng, rng.choice([500, 3000]), rng.randrange(3, 40))
        zfo = rng.random() < 0.5
        edges = _edges(pool, zfo)
        if len(edges) < 2:
            continue
        amount = (edges[0] + edges[1]) // 2           # a step taken whole, then part of one
        got = pool._quote_in(zfo, amount)
        assert got == _loop_out(pool, zfo, amount)
        taken += got is not None
        multi += got is not None and pool._swap(zfo, amount, None, False).ticks_crossed > 0
    assert taken > 100 and multi > 10
    # a new state (a Swap log) has its own steps, not the old one's
    p = random_pool(random.Random(3))
    p._step(True, 0)
    q = p.with_state(p.sqrt_price_x96 - p.sqrt_price_x96 // 1000, p.liquidity, p.tick)
    assert q._steps is None and p._steps is not None
