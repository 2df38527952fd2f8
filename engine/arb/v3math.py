"""Uniswap V3's math libraries, ported line by line from v3-core 1.0.1 (the pool's swap loop,
which uses them, is engine/arb/v3.py).

    TickMath        get_sqrt_ratio_at_tick, get_tick_at_sqrt_ratio   (same bit tricks, same rounding)
    FullMath        mul_div, mul_div_rounding_up                     (reverts become ValueError)
    SqrtPriceMath   next price from an input/output, amount0/amount1 deltas (incl. the overflow
                    fallbacks of getNextSqrtPriceFromAmount0RoundingUp, which change the result)
    SwapMath        compute_swap_step

Solidity's uint256 overflow is reproduced where the contract relies on it.  Nothing here does I/O.
"""
from __future__ import annotations

from functools import lru_cache

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
