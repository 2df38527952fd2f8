"""Price impact of an event: how far a pool's price moved, in basis points, vs its previous state.

The monitor calls `price_impact` with the pool's state before the event and the values decoded
from the log (a V2 `Sync(reserve0, reserve1)`, or a V3 `Swap(..., sqrtPriceX96, liquidity, tick)`)
and forwards the event to the roles only when the move is significant (>= 50 bps, the guide's
0.5 %, configurable).  Exact integers: the price ratio is compared without floats, the bps are
floored, so a move just under the threshold is never rounded up into it.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool

DEFAULT_THRESHOLD_BPS = 50


@dataclass(frozen=True, slots=True)
class PriceImpact:
    pool: str
    bps: int                 # |new/old − 1| × 10 000, floored
    up: bool                 # token0's price in token1 rose
    significant: bool


def move_bps(old_num: int, old_den: int, new_num: int, new_den: int) -> tuple[int, bool]:
    """|new/old − 1| in bps (floored) for prices given as exact ratios; and whether it rose."""
    a = new_num * old_den
    b = old_num * new_den
    if b == 0:
        raise ValueError("the previous price is zero")
    return abs(a - b) * 10_000 // b, a > b


def v2_sync_impact(prev: V2Pool, reserve0: int, reserve1: int,
                   threshold_bps: int = DEFAULT_THRESHOLD_BPS) -> PriceImpact:
    """token0's price in token1 is reserve1/reserve0."""
    bps, up = move_bps(prev.reserve1, prev.reserve0, reserve1, reserve0)
    return PriceImpact(prev.address, bps, up, bps >= threshold_bps)


def v3_swap_impact(prev_sqrt_price_x96: int, sqrt_price_x96: int, pool: str = "",
                   threshold_bps: int = DEFAULT_THRESHOLD_BPS) -> PriceImpact:
    """token0's price in token1 is (sqrtPriceX96 / 2^96)²."""
    bps, up = move_bps(prev_sqrt_price_x96 ** 2, 1, sqrt_price_x96 ** 2, 1)
    return PriceImpact(pool, bps, up, bps >= threshold_bps)


def price_impact(prev: V2Pool | V3Pool, new: V2Pool | V3Pool,
                 threshold_bps: int = DEFAULT_THRESHOLD_BPS) -> PriceImpact:
    """Impact between two states of the same pool (the state before and after the log)."""
    if isinstance(prev, V2Pool):
        return v2_sync_impact(prev, new.reserve0, new.reserve1, threshold_bps)
    return v3_swap_impact(prev.sqrt_price_x96, new.sqrt_price_x96, prev.address, threshold_bps)
