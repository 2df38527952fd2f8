"""Uniswap V2 style constant-product pools: exact integer quotes, rounding as the pair rounds.

`get_amount_out` / `get_amount_in` are UniswapV2Library's formulas with the fee as a parameter,
so the same code serves every fork (Uniswap/Sushi/QuickSwap 30 bps, BaseSwap and PancakeSwap
25 bps, ...).  With `fee_bps=30` over a 10 000 denominator the results equal the library's
997/1000 exactly (the ratio is the same, the floors therefore too).  Camelot-style pairs that
count the fee in 1/100 000 pass `fee_denominator=100_000`.

Why these equal the pair's own rule: `UniswapV2Pair.swap` accepts an output `y` for an input `x`
iff (R0*D + (D-f)*x) * (R1 - y) >= R0*R1*D, which solves to y <= floor((D-f)*x*R1 / (R0*D +
(D-f)*x)) = get_amount_out(x).  So get_amount_out is the largest output the pair pays; and
get_amount_in returns floor(...) + 1 (the library adds 1 even when the division is exact, so it
may ask one wei more than the minimum: we keep that, because the contracts do).

`V2Pool` holds a pair's state (no I/O: the chain layer feeds it Sync events) and quotes both
directions; `after_swap` returns the state the pair would have after a swap.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from engine.arb.types import PoolKind, TokenPair

FEE_DENOMINATOR = 10_000
MAX_UINT112 = (1 << 112) - 1


class InsufficientLiquidity(ValueError):
    """The library's INSUFFICIENT_LIQUIDITY / INSUFFICIENT_*_AMOUNT reverts."""


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = 30,
                   fee_denominator: int = FEE_DENOMINATOR) -> int:
    """UniswapV2Library.getAmountOut with a per-DEX fee (floor division, as the contract)."""
    if amount_in <= 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    amount_in_with_fee = amount_in * (fee_denominator - fee_bps)
    return (amount_in_with_fee * reserve_out) // (reserve_in * fee_denominator + amount_in_with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = 30,
                  fee_denominator: int = FEE_DENOMINATOR) -> int:
    """UniswapV2Library.getAmountIn with a per-DEX fee: floor(...) + 1, as the contract."""
    if amount_out <= 0:
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0 or amount_out >= reserve_out:
        # the library would underflow (reverts) when amount_out >= reserve_out
        raise InsufficientLiquidity("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    numerator = reserve_in * amount_out * fee_denominator
    denominator = (reserve_out - amount_out) * (fee_denominator - fee_bps)
    return numerator // denominator + 1


@dataclass(frozen=True, slots=True)
class V2Pool(TokenPair):
    """A constant-product pair's state. token0 < token1 as in the pair; fee in basis points."""
    address: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    fee_bps: int = 30
    fee_denominator: int = FEE_DENOMINATOR
    dex: str = ""

    kind = PoolKind.V2

    @property
    def fee(self) -> int:
        return self.fee_bps

    def reserves_for(self, token_in: str) -> tuple[int, int]:
        """(reserve_in, reserve_out) for a swap that sells `token_in`."""
        if token_in == self.token0:
            return self.reserve0, self.reserve1
        if token_in == self.token1:
            return self.reserve1, self.reserve0
        raise KeyError(f"{token_in} is not in pair {self.address}")

    def amount_out(self, token_in: str, amount_in: int) -> int:
        r_in, r_out = self.reserves_for(token_in)
        return get_amount_out(amount_in, r_in, r_out, self.fee_bps, self.fee_denominator)

    def amount_in(self, token_out: str, amount_out: int) -> int:
        """The input (in the other token) the library asks for to receive `amount_out`."""
        r_in, r_out = self.reserves_for(self.other(token_out))
        return get_amount_in(amount_out, r_in, r_out, self.fee_bps, self.fee_denominator)

    # the name every pool kind shares (search and profit call this)
    quote = amount_out

    def after_swap(self, token_in: str, amount_in: int, amount_out: int | None = None) -> "V2Pool":
        """The pair's state after selling `amount_in` of `token_in` for `amount_out` (default:
        the full get_amount_out)."""
        if amount_out is None:
            amount_out = self.amount_out(token_in, amount_in)
        if token_in == self.token0:
            return replace(self, reserve0=self.reserve0 + amount_in, reserve1=self.reserve1 - amount_out)
        if token_in == self.token1:
            return replace(self, reserve0=self.reserve0 - amount_out, reserve1=self.reserve1 + amount_in)
        raise KeyError(f"{token_in} is not in pair {self.address}")

    def with_reserves(self, reserve0: int, reserve1: int) -> "V2Pool":
        """The state after a Sync(reserve0, reserve1) log (the constructor directly: the chain
        monitor does this for every log, and `replace` costs 3x as much)."""
        return type(self)(self.address, self.token0, self.token1, reserve0, reserve1,
                          self.fee_bps, self.fee_denominator, self.dex)

    def price(self, token_in: str) -> float:
        """Marginal price of token_in in token_out before fees (raw units; ranking only)."""
        r_in, r_out = self.reserves_for(token_in)
        return r_out / r_in
