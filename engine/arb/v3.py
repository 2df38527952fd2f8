"""Uniswap V3 concentrated-liquidity math, ported line by line from v3-core 1.0.1.

    TickMath, FullMath, SqrtPriceMath, SwapMath   engine/arb/v3math.py (re-exported here)
    V3Pool          state (sqrt_price_x96, liquidity, tick, fee, tick_spacing, initialised ticks with
                    liquidity_net) and `swap`, the loop of UniswapV3Pool.swap

Exactness needs the loop to take the *same steps* as the pool, because each step rounds: the pool
walks its tick bitmap one 256-bit word at a time and stops at a word's edge even when no tick is
initialised there.  `_next_initialized_tick_within_one_word` reproduces that from a sorted list of
initialised ticks.  Solidity's uint256 overflow is reproduced where the contract relies on it.

Nothing here does I/O.  A `V3Pool` is immutable: `swap` returns the amounts and a new pool state
(the tick table is shared, a swap never changes liquidity_net).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from typing import Mapping

from engine.arb.types import PoolKind, TokenPair
from engine.arb.v3math import (  # noqa: F401  (the math, re-exported: callers import it from here)
    V3MathError, PartialFill, mul_div, mul_div_rounding_up, get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio, get_next_sqrt_price_from_amount0_rounding_up,
    get_next_sqrt_price_from_amount1_rounding_down, get_next_sqrt_price_from_input,
    get_next_sqrt_price_from_output, get_amount0_delta, get_amount1_delta, compute_swap_step,
    MIN_TICK, MAX_TICK, MIN_SQRT_RATIO, MAX_SQRT_RATIO, Q96, Q128, MAX_UINT256, MAX_UINT160,
    MAX_UINT128, MAX_INT256,
)

TICK_SPACING_BY_FEE = {100: 1, 500: 10, 3000: 60, 10000: 200}
STEP_CACHE = 8      # swap-loop steps kept per pool state and direction (V3Pool._step)


@dataclass(frozen=True, slots=True)
class V3SwapResult:
    amount0: int            # > 0: paid into the pool; < 0: paid out (the contract's sign)
    amount1: int
    pool: "V3Pool"          # the state after the swap
    ticks_crossed: int      # initialised ticks crossed (gas grows with it)


@dataclass(frozen=True, slots=True)
class V3Pool(TokenPair):
    """A Uniswap V3 pool's swap-relevant state.  `ticks` maps every initialised tick to its
    liquidity_net; `_sorted` is derived from it (compressed ticks, ascending)."""
    address: str
    token0: str
    token1: str
    fee: int                     # hundredths of a bip (500 = 0.05 %)
    tick_spacing: int
    sqrt_price_x96: int
    liquidity: int
    tick: int
    ticks: Mapping[int, int] = field(default_factory=dict)
    dex: str = ""
    _sorted: tuple[int, ...] = field(default=(), compare=False, repr=False)
    # per direction, the swap loop's steps as far as they depend on the state alone (`_step`)
    _steps: tuple = field(default=None, init=False, compare=False, repr=False)

    kind = PoolKind.V3

    def __post_init__(self) -> None:
        if not self._sorted and self.ticks:
            for t in self.ticks:
                if t % self.tick_spacing:
                    raise ValueError(f"tick {t} is not a multiple of the spacing {self.tick_spacing}")
            object.__setattr__(self, "_sorted",
                               tuple(sorted(t // self.tick_spacing for t, n in self.ticks.items())))

    @classmethod
    def from_liquidity_ranges(cls, address: str, token0: str, token1: str, fee: int,
                              sqrt_price_x96: int, positions: list[tuple[int, int, int]],
                              tick_spacing: int | None = None, dex: str = "") -> "V3Pool":
        """Build a pool from positions (tick_lower, tick_upper, liquidity) as mint would."""
        spacing = tick_spacing or TICK_SPACING_BY_FEE[fee]
        ticks: dict[int, int] = {}
        tick = get_tick_at_sqrt_ratio(sqrt_price_x96)
        active = 0
        for lo, hi, liq in positions:
            ticks[lo] = ticks.get(lo, 0) + liq
            ticks[hi] = ticks.get(hi, 0) - liq
            if lo <= tick < hi:
                active += liq
        # a tick whose net went back to zero can still be initialised (gross > 0): keep it, the
        # pool keeps it too while any position references it
        return cls(address, token0, token1, fee, spacing, sqrt_price_x96, active, tick, ticks, dex)

    # --- the tick bitmap, walked as TickBitmap.nextInitializedTickWithinOneWord walks it
    def _next_initialized_tick_within_one_word(self, tick: int, lte: bool) -> tuple[int, bool]:
        spacing = self.tick_spacing
        compressed = tick // spacing  # floor, as the contract's "round towards negative infinity"
        s = self._sorted
        if lte:
            word_start = (compressed >> 8) << 8
            i = bisect_right(s, compressed) - 1
            if i >= 0 and s[i] >= word_start:
                return s[i] * spacing, True
            return word_start * spacing, False
        nxt = compressed + 1
        word_end = ((nxt >> 8) << 8) + 255
        i = bisect_left(s, nxt)
        if i < len(s) and s[i] <= word_end:
            return s[i] * spacing, True
        return word_end * spacing, False

    def _step(self, zero_for_one: bool, k: int):
        """Step k of the swap loop at the default limit, as far as it depends on the state
        alone: (start price, liquidity, target, input net of fee that reaches the target,
        gross input and output of the whole step), or None past the cache or at the limit.
        A step that reaches its target takes amounts that do not depend on the swap's size
        (compute_swap_step: amount_in to the target, its fee rounded up, amount_out), so
        they are computed once per pool state; the same integers as `_swap`."""
        cache = self._steps
        if cache is None:
            cache = ([], [])
            object.__setattr__(self, "_steps", cache)
        steps = cache[zero_for_one]
        while len(steps) <= k:
            if len(steps) >= STEP_CACHE:
                return None
            if steps:
                prev = steps[-1]
                if prev is None:
                    return None
                price, liquidity, tick = prev[6], prev[7], prev[8]
            else:
                price, liquidity, tick = self.sqrt_price_x96, self.liquidity, self.tick
            steps.append(self._next_step(zero_for_one, price, liquidity, tick))
        return steps[k]

    def _next_step(self, zero_for_one: bool, price: int, liquidity: int, tick: int):
        limit = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
        if not (MIN_SQRT_RATIO + 1 < price < MAX_SQRT_RATIO - 1):
            return None
        tick_next, initialized = self._next_initialized_tick_within_one_word(tick, zero_for_one)
        tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
        price_next = get_sqrt_ratio_at_tick(tick_next)
        if zero_for_one:
            target = limit if price_next < limit else price_next
            reach = get_amount0_delta(target, price, liquidity, True)
            out = get_amount1_delta(target, price, liquidity, False)
        else:
            target = limit if price_next > limit else price_next
            reach = get_amount1_delta(price, target, liquidity, True)
            out = get_amount0_delta(price, target, liquidity, False)
        if target == limit:
            return None               # the swap would stop at the limit: the loop's business
        gross = reach + mul_div_rounding_up(reach, self.fee, 1_000_000 - self.fee)
        after = liquidity
        if initialized:
            net = self.ticks[tick_next]
            after += -net if zero_for_one else net
            if after < 0 or after > MAX_UINT128:
                return None           # the loop raises LS / LA
        return (price, liquidity, target, reach, gross, out,
                target, after, tick_next - 1 if zero_for_one else tick_next)

    def _quote_in(self, zero_for_one: bool, amount_in: int) -> int | None:
        """The output of an exact-input swap at the default limit from the cached steps:
        whole steps by addition, the last one through compute_swap_step's own integers.
        None when the cache cannot say (the limit reached, a step ending exactly on its
        target, more than STEP_CACHE steps): the caller runs the loop.  An arbitrage's
        sizing quotes a pool a dozen times in one state; this is that case."""
        if amount_in <= 0:
            return None
        remaining, out, k = amount_in, 0, 0
        keep = 1_000_000 - self.fee
        while True:
            step = self._step(zero_for_one, k)
            if step is None:
                return None
            price, liquidity, target, reach, gross, step_out = step[:6]
            less_fee = remaining * keep // 1_000_000
            if less_fee > MAX_UINT256:
                return None           # mulDiv overflows: the loop raises it
            if less_fee < reach:
                nxt = get_next_sqrt_price_from_input(price, liquidity, less_fee, zero_for_one)
                if nxt == target:
                    return None
                # the step ends before its target: its fee is the rest, the loop stops here
                if zero_for_one:
                    return out + get_amount1_delta(nxt, price, liquidity, False)
                return out + get_amount0_delta(price, nxt, liquidity, False)
            remaining -= gross
            out += step_out
            if remaining == 0:
                return out
            k += 1

    def swap(self, zero_for_one: bool, amount_specified: int,
             sqrt_price_limit_x96: int | None = None) -> V3SwapResult:
        """UniswapV3Pool.swap without transfers: amount_specified > 0 is exact input, < 0 exact
        output.  The default limit is the extreme the periphery uses (MIN+1 / MAX-1)."""
        return self._swap(zero_for_one, amount_specified, sqrt_price_limit_x96, True)

    def _swap(self, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None,
              want_state: bool):
        if amount_specified == 0:
            raise V3MathError("AS")
        if sqrt_price_limit_x96 is None:
            sqrt_price_limit_x96 = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
        if zero_for_one:
            if not (MIN_SQRT_RATIO < sqrt_price_limit_x96 < self.sqrt_price_x96):
                raise V3MathError("SPL")
        elif not (self.sqrt_price_x96 < sqrt_price_limit_x96 < MAX_SQRT_RATIO):
            raise V3MathError("SPL")
        exact_input = amount_specified > 0
        remaining = amount_specified
        calculated = 0
        sqrt_price = self.sqrt_price_x96
        tick = self.tick
        liquidity = self.liquidity
        fee = self.fee
        ticks = self.ticks
        crossed = 0
        while remaining != 0 and sqrt_price != sqrt_price_limit_x96:
            start_price = sqrt_price
            tick_next, initialized = self._next_initialized_tick_within_one_word(tick, zero_for_one)
            if tick_next < MIN_TICK:
                tick_next = MIN_TICK
            elif tick_next > MAX_TICK:
                tick_next = MAX_TICK
            price_next = get_sqrt_ratio_at_tick(tick_next)
            if zero_for_one:
                target = sqrt_price_limit_x96 if price_next < sqrt_price_limit_x96 else price_next
            else:
                target = sqrt_price_limit_x96 if price_next > sqrt_price_limit_x96 else price_next
            sqrt_price, step_in, step_out, step_fee = compute_swap_step(
                sqrt_price, target, liquidity, remaining, fee)
            if exact_input:
                remaining -= step_in + step_fee
                calculated -= step_out
            else:
                remaining += step_out
                calculated += step_in + step_fee
            if sqrt_price == price_next:
                if initialized:
                    net = ticks[tick_next]
                    if zero_for_one:
                        net = -net
                    liquidity += net
                    if liquidity < 0:
                        raise V3MathError("LS")
                    if liquidity > MAX_UINT128:
                        raise V3MathError("LA")
                    crossed += 1
                tick = tick_next - 1 if zero_for_one else tick_next
            elif sqrt_price != start_price and (want_state or remaining != 0):
                # (the loop ends here when the input is used up: a quote needs no final tick)
                tick = get_tick_at_sqrt_ratio(sqrt_price)
        if zero_for_one == exact_input:
            amount0, amount1 = amount_specified - remaining, calculated
        else:
            amount0, amount1 = calculated, amount_specified - remaining
        if not want_state:
            return V3SwapResult(amount0, amount1, self, crossed)
        new = replace(self, sqrt_price_x96=sqrt_price, liquidity=liquidity, tick=tick,
                      _sorted=self._sorted)
        return V3SwapResult(amount0, amount1, new, crossed)

    # --- the interface every pool kind shares
    def quote_exact_in(self, token_in: str, amount_in: int) -> int:
        """Output of an exact-input swap of `amount_in` of `token_in` (what QuoterV1 returns)."""
        zero_for_one = self._direction(token_in)
        out = self._quote_in(zero_for_one, amount_in)
        if out is not None:
            return out
        r = self._swap(zero_for_one, amount_in, None, False)
        return -(r.amount1 if zero_for_one else r.amount0)

    def amount_out(self, token_in: str, amount_in: int) -> int:
        """Output for exactly `amount_in` in, as a route hop sees it: if the pool's liquidity
        runs out before all of `amount_in` is taken, raise PartialFill — the executor contract
        reverts on a partial fill, so such an amount must never look feasible (quote_exact_in,
        like QuoterV1, reports the partial output instead)."""
        zero_for_one = self._direction(token_in)
        out = self._quote_in(zero_for_one, amount_in)
        if out is not None:
            return out
        r = self._swap(zero_for_one, amount_in, None, False)
        taken = r.amount0 if zero_for_one else r.amount1
        if taken < amount_in:
            raise PartialFill(f"{self.address}: takes only {taken} of {amount_in} "
                              "before its liquidity runs out")
        return -(r.amount1 if zero_for_one else r.amount0)

    quote = amount_out

    def quote_exact_out(self, token_out: str, amount_out: int) -> int:
        """Input needed for exactly `amount_out` of `token_out` (may deliver less if the pool
        runs out of liquidity: the caller compares)."""
        zero_for_one = self._direction(self.other(token_out))
        r = self.swap(zero_for_one, -amount_out)
        return r.amount0 if zero_for_one else r.amount1

    def after_swap(self, token_in: str, amount_in: int) -> "V3Pool":
        return self.swap(self._direction(token_in), amount_in).pool

    def _direction(self, token_in: str) -> bool:
        if token_in == self.token0:
            return True
        if token_in == self.token1:
            return False
        raise KeyError(f"{token_in} is not in pool {self.address}")

    def price(self, token_in: str) -> float:
        """Marginal price of token_in in token_out before fees (raw units; ranking only)."""
        p = (self.sqrt_price_x96 / Q96) ** 2  # token1 per token0
        return p if token_in == self.token0 else 1.0 / p

    def with_state(self, sqrt_price_x96: int, liquidity: int, tick: int) -> "V3Pool":
        """The state after a Swap log (which carries all three); the constructor directly, as
        V2Pool.with_reserves (the tick table and its sorted form are shared, not copied)."""
        return type(self)(self.address, self.token0, self.token1, self.fee, self.tick_spacing,
                          sqrt_price_x96, liquidity, tick, self.ticks, self.dex, self._sorted)
