"""Uniswap V3 concentrated-liquidity math, ported line by line from v3-core 1.0.1.

    TickMath        get_sqrt_ratio_at_tick, get_tick_at_sqrt_ratio   (same bit tricks, same rounding)
    FullMath        mul_div, mul_div_rounding_up                     (reverts become ValueError)
    SqrtPriceMath   next price from an input/output, amount0/amount1 deltas (incl. the overflow
                    fallbacks of getNextSqrtPriceFromAmount0RoundingUp, which change the result)
    SwapMath        compute_swap_step
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
from functools import lru_cache
from dataclasses import dataclass, field, replace
from typing import Mapping

from engine.arb.types import PoolKind, TokenPair

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96
Q128 = 1 << 128
MAX_UINT256 = (1 << 256) - 1
MAX_UINT160 = (1 << 160) - 1
MAX_UINT128 = (1 << 128) - 1
MAX_INT256 = (1 << 255) - 1


class V3MathError(ValueError):
    """A revert of the contract math (the message is the contract's code where it has one)."""


class PartialFill(V3MathError):
    """The pool cannot take the whole input: the swap would stop at the price limit."""


# ---------------------------------------------------------------------------------------- FullMath
def mul_div(a: int, b: int, denominator: int) -> int:
    if denominator <= 0:
        raise V3MathError("mulDiv: denominator 0")
    result = a * b // denominator
    if result > MAX_UINT256:
        raise V3MathError("mulDiv: overflow")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    if denominator <= 0:
        raise V3MathError("mulDivRoundingUp: denominator 0")
    q, r = divmod(a * b, denominator)
    if r:
        q += 1
    if q > MAX_UINT256:
        raise V3MathError("mulDivRoundingUp: overflow")
    return q


def _div_rounding_up(x: int, y: int) -> int:
    # UnsafeMath.divRoundingUp: no check; y == 0 is a revert (division by zero) in the EVM
    if y == 0:
        raise V3MathError("division by zero")
    return -(-x // y)


def _to_uint160(x: int) -> int:
    if x > MAX_UINT160:
        raise V3MathError("SafeCast: uint160")
    return x


# ---------------------------------------------------------------------------------------- TickMath
_TICK_FACTORS = (
    (0x2, 0xfff97272373d413259a46990580e213a), (0x4, 0xfff2e50f5f656932ef12357cf3c7fdcc),
    (0x8, 0xffe5caca7e10e4e61c3624eaa0941cd0), (0x10, 0xffcb9843d60f6159c9db58835c926644),
    (0x20, 0xff973b41fa98c081472e6896dfb254c0), (0x40, 0xff2ea16466c96a3843ec78b326b52861),
    (0x80, 0xfe5dee046a99a2a811c461f1969c3053), (0x100, 0xfcbe86c7900a88aedcffc83b479aa3a4),
    (0x200, 0xf987a7253ac413176f2b074cf7815e54), (0x400, 0xf3392b0822b70005940c7a398e4b70f3),
    (0x800, 0xe7159475a2c29b7443b29c7fa6e889d9), (0x1000, 0xd097f3bdfd2022b8845ad8f792aa5825),
    (0x2000, 0xa9f746462d870fdf8a65dc1f90e061e5), (0x4000, 0x70d869a156d2a1b890bb3df62baf32f7),
    (0x8000, 0x31be135f97d08fd981231505542fcfa6), (0x10000, 0x9aa508b5b7a84e1c677de54f3e99bc9),
    (0x20000, 0x5d6af8dedb81196699c329225ee604), (0x40000, 0x2216e584f5fa1ea926041bedfe98),
    (0x80000, 0x48a170391f7dc42444e8fa2),
)


@lru_cache(maxsize=1 << 16)  # pure and hot: a swap step asks for the same few ticks again and again
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick: sqrt(1.0001^tick) * 2^96, rounded up (uint160)."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise V3MathError("T")
    ratio = 0xfffcb933bd6fad37aa2d162d1a594001 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = MAX_UINT256 // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio: the greatest tick whose sqrt ratio is <= the price."""
    if not (MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO):
        raise V3MathError("R")
    ratio = sqrt_price_x96 << 32
    msb = ratio.bit_length() - 1  # the assembly's binary search for the most significant bit
    r = ratio >> (msb - 127) if msb >= 128 else ratio << (127 - msb)
    log_2 = (msb - 128) << 64
    for shift in range(63, 49, -1):
        r = (r * r) >> 127
        f = r >> 128
        log_2 |= f << shift
        r >>= f
    log_sqrt10001 = log_2 * 255738958999603826347141  # 128.128 number
    tick_low = (log_sqrt10001 - 3402992956809132418596140100660247210) >> 128
    tick_hi = (log_sqrt10001 + 291339464771989622907027621153398088495) >> 128
    if tick_low == tick_hi:
        return tick_low
    return tick_hi if get_sqrt_ratio_at_tick(tick_hi) <= sqrt_price_x96 else tick_low


# ----------------------------------------------------------------------------------- SqrtPriceMath
def get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96: int, liquidity: int, amount: int,
                                                 add: bool) -> int:
    if amount == 0:
        return sqrt_px96
    numerator1 = liquidity << 96
    product = amount * sqrt_px96
    if add:
        # the contract takes the precise path only when amount*sqrtP and the denominator fit 256 bits
        if product <= MAX_UINT256:
            denominator = numerator1 + product
            if denominator <= MAX_UINT256:
                return mul_div_rounding_up(numerator1, sqrt_px96, denominator)
        tmp = numerator1 // sqrt_px96 + amount
        if tmp > MAX_UINT256:
            raise V3MathError("LowGasSafeMath: add overflow")
        return _div_rounding_up(numerator1, tmp)
    if product > MAX_UINT256 or numerator1 <= product:
        raise V3MathError("getNextSqrtPriceFromAmount0RoundingUp: denominator underflow")
    return _to_uint160(mul_div_rounding_up(numerator1, sqrt_px96, numerator1 - product))


def get_next_sqrt_price_from_amount1_rounding_down(sqrt_px96: int, liquidity: int, amount: int,
                                                   add: bool) -> int:
    if add:
        quotient = ((amount << 96) // liquidity if amount <= MAX_UINT160
                    else mul_div(amount, Q96, liquidity))
        result = sqrt_px96 + quotient
        if result > MAX_UINT256:
            raise V3MathError("LowGasSafeMath: add overflow")
        return _to_uint160(result)
    quotient = (_div_rounding_up(amount << 96, liquidity) if amount <= MAX_UINT160
                else mul_div_rounding_up(amount, Q96, liquidity))
    if sqrt_px96 <= quotient:
        raise V3MathError("getNextSqrtPriceFromAmount1RoundingDown: price underflow")
    return sqrt_px96 - quotient


def get_next_sqrt_price_from_input(sqrt_px96: int, liquidity: int, amount_in: int,
                                   zero_for_one: bool) -> int:
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise V3MathError("getNextSqrtPriceFromInput: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_in, True)
    return get_next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_in, True)


def get_next_sqrt_price_from_output(sqrt_px96: int, liquidity: int, amount_out: int,
                                    zero_for_one: bool) -> int:
    if sqrt_px96 <= 0 or liquidity <= 0:
        raise V3MathError("getNextSqrtPriceFromOutput: zero price or liquidity")
    if zero_for_one:
        return get_next_sqrt_price_from_amount1_rounding_down(sqrt_px96, liquidity, amount_out, False)
    return get_next_sqrt_price_from_amount0_rounding_up(sqrt_px96, liquidity, amount_out, False)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise V3MathError("getAmount0Delta: zero price")
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return _div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


# ---------------------------------------------------------------------------------------- SwapMath
def compute_swap_step(sqrt_current: int, sqrt_target: int, liquidity: int, amount_remaining: int,
                      fee_pips: int) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep -> (sqrt_next, amount_in, amount_out, fee_amount)."""
    zero_for_one = sqrt_current >= sqrt_target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = mul_div(amount_remaining, 1_000_000 - fee_pips, 1_000_000)
        amount_in = (get_amount0_delta(sqrt_target, sqrt_current, liquidity, True) if zero_for_one
                     else get_amount1_delta(sqrt_current, sqrt_target, liquidity, True))
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_input(sqrt_current, liquidity, remaining_less_fee,
                                                       zero_for_one)
    else:
        amount_out = (get_amount1_delta(sqrt_target, sqrt_current, liquidity, False) if zero_for_one
                      else get_amount0_delta(sqrt_current, sqrt_target, liquidity, False))
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target
        else:
            sqrt_next = get_next_sqrt_price_from_output(sqrt_current, liquidity, -amount_remaining,
                                                        zero_for_one)
    reached = sqrt_target == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and sqrt_next != sqrt_target:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, 1_000_000 - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount


# ------------------------------------------------------------------------------------------ V3Pool
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
