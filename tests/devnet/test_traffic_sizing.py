"""The devnet traffic generator's swap sizing, as pure functions, against engine/arb's exact
V2 and V3 math (what the real pools compute); and the package's seams: the state cache key
follows every file of engine/devnet, and scripts.devnet still hands out the same objects."""
from __future__ import annotations

import shutil

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.arb import v2, v3
from engine.chain.contracts import toolchain_missing
from engine.devnet.traffic import (BIG_MOVE, leans_back, v2_amount_in, v2_share_for_move,
                                   v3_amount_in)

moves = st.floats(*BIG_MOVE)
reserves = st.integers(10 ** 9, 10 ** 30)


def v2_price_ratio(r_in: int, r_out: int, amount: int) -> float:
    """How far (a factor >= 1) a V2 swap of `amount` in moves the pool's price."""
    out = v2.get_amount_out(amount, r_in, r_out, 30)
    return ((r_in + amount) / (r_out - out)) / (r_in / r_out)


@settings(max_examples=300, deadline=None)
@given(move=moves, r_in=reserves, r_out=reserves)
def test_a_big_v2_swap_moves_the_price_by_at_least_its_move_and_not_much_more(move, r_in, r_out):
    amount = v2_amount_in(r_in, v2_share_for_move(move))
    ratio = v2_price_ratio(r_in, r_out, amount)
    assert 1 + move <= ratio <= 1 + move * 1.05


@settings(max_examples=300, deadline=None)
@given(log_share=st.floats(-5.0, -3.0), r_in=reserves, r_out=reserves)
def test_a_small_v2_swap_stays_under_the_big_threshold(log_share, r_in, r_out):
    ratio = v2_price_ratio(r_in, r_out, v2_amount_in(r_in, 10 ** log_share))
    assert ratio < 1.005


def test_v2_amount_is_at_least_one_wei():
    assert v2_amount_in(10, 1e-5) == 1


sqrt_prices = st.integers(v3.get_sqrt_ratio_at_tick(-400_000), v3.get_sqrt_ratio_at_tick(400_000))
liquidities = st.integers(10 ** 12, 10 ** 30)


@settings(max_examples=300, deadline=None)
@given(move=moves, sp=sqrt_prices, liq=liquidities, zero_for_one=st.booleans(),
       fee=st.sampled_from(sorted(v3.TICK_SPACING_BY_FEE)))
def test_a_big_v3_swap_within_the_active_liquidity_moves_the_price_by_its_move(
        move, sp, liq, zero_for_one, fee):
    amount = v3_amount_in(sp, liq, zero_for_one, move, fee)
    assume(amount >= 10 ** 6)   # a swap of a few wei is all rounding; the devnet's are far larger
    after_fee = amount - v3.mul_div_rounding_up(amount, fee, 10 ** 6)   # the pool keeps its fee
    sp2 = v3.get_next_sqrt_price_from_input(sp, liq, after_fee, zero_for_one)
    change = (sp2 / sp) ** 2 - 1           # token1 per token0
    if zero_for_one:
        assert -move * 1.05 <= change <= -move
    else:
        assert move <= change <= move * 1.05


@pytest.mark.parametrize("price,start,u,expected", [
    (1.1, 1.0, 0.0, True),      # above the start: the lean sells token0, which lowers the price
    (0.9, 1.0, 0.0, False),
    (1.1, 1.0, 0.99, False),    # the other 35 %: away from the start
    (0.9, 1.0, 0.99, True),
    (1.1, 1.0, 0.6499, True),
    (1.1, 1.0, 0.65, False),
])
def test_swaps_lean_back_toward_the_seeded_price(price, start, u, expected):
    assert leans_back(price, start, u) is expected


@pytest.mark.skipif(bool(toolchain_missing()), reason=toolchain_missing() or "")
def test_the_state_cache_key_follows_every_file_of_the_package(tmp_path):
    import engine.devnet.deploy as deploy
    package = tmp_path / "devnet"
    shutil.copytree(deploy.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    key = deploy.cache_key("base", 0, package)
    assert key == deploy.cache_key("base", 0) and key.startswith("base-0-")
    assert deploy.cache_key("base", 1, package) != key
    for name in ("traffic.py", "cli.py", "devnet.py"):    # not only the deploying module
        f = package / name
        original = f.read_text()
        f.write_text(original + "\n# changed\n")
        assert deploy.cache_key("base", 0, package) != key, name
        f.write_text(original)
    assert deploy.cache_key("base", 0, package) == key


def test_scripts_devnet_is_a_shim_over_engine_devnet():
    import engine.devnet
    import scripts.devnet
    for name in ("Devnet", "Traffic", "SwapRecord", "main", "free_port", "CHAINS", "Anvil"):
        assert getattr(scripts.devnet, name) is getattr(engine.devnet, name), name
    assert scripts.devnet.__all__ == engine.devnet.__all__
