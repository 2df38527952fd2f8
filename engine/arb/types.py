"""The vocabulary shared by the arbitrage brain (engine/arb) and the executor side (engine/chain).

Plain, immutable values: a `Hop` is one swap through one pool, a `Route` is a cycle of hops that
starts and ends in the same token, an `Action` is everything the executor needs to take the
opportunity atomically (or to let it go).  Amounts are exact integers in the token's smallest
unit; addresses are checksummed hex strings.  Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class PoolKind(str, Enum):
    V2 = "v2"  # Uniswap V2 style: reserves, constant product, fee in basis points
    V3 = "v3"  # Uniswap V3 style: sqrtPriceX96, liquidity, ticks, fee in hundredths of a bip


class LoanSource(str, Enum):
    UNISWAP_V2 = "uniswap-v2"  # flash swap: repay getAmountIn on the pair's pre-swap reserves
    UNISWAP_V3 = "uniswap-v3"  # pool.flash: fee = pool fee
    BALANCER = "balancer"      # Vault.flashLoan: fee 0 (protocol flash fee percentage)
    AAVE = "aave"              # Pool.flashLoanSimple: premium (5 bps by default on V3)


class TokenPair:
    """What every pool kind shares: its two tokens (`token0`, `token1`, `address` fields of the
    dataclass that inherits this)."""
    __slots__ = ()

    @property
    def tokens(self) -> tuple[str, str]:
        return (self.token0, self.token1)

    def other(self, token: str) -> str:
        if token == self.token0:
            return self.token1
        if token == self.token1:
            return self.token0
        raise KeyError(f"{token} is not in pool {self.address}")


@dataclass(frozen=True)
class Hop:
    pool: str          # pool / pair address
    kind: PoolKind
    token_in: str
    token_out: str
    fee: int           # V2: basis points (30 = 0.3 %); V3: hundredths of a bip (500 = 0.05 %)
    dex: str = ""      # DEX name from the manifest, for reports


@dataclass(frozen=True)
class Route:
    hops: tuple[Hop, ...]

    def __post_init__(self) -> None:
        if not self.hops:
            raise ValueError("a route needs at least one hop")
        for a, b in zip(self.hops, self.hops[1:]):
            if a.token_out != b.token_in:
                raise ValueError(f"route breaks between {a.pool} and {b.pool}: "
                                 f"{a.token_out} != {b.token_in}")

    @property
    def token(self) -> str:
        """The token borrowed, routed and repaid (and in which profit is counted)."""
        return self.hops[0].token_in

    @property
    def is_cycle(self) -> bool:
        return self.hops[-1].token_out == self.hops[0].token_in


@dataclass(frozen=True)
class Loan:
    source: LoanSource
    lender: str        # the pair, pool, vault or Aave pool the executor borrows from
    token: str
    amount: int
    fee: int           # exact fee the lender charges on `amount`, in `token` units


@dataclass(frozen=True)
class Action:
    """A fully specified order for the executor (the decision's output)."""
    chain: str
    route: Route
    amount_in: int
    expected_out: int
    loan: Loan
    min_profit: int            # the contract reverts unless profit >= this (token units)
    expected_profit: int       # net of loan fee and gas, in token units
    gas_limit: int
    max_fee_per_gas: int       # wei
    max_priority_fee_per_gas: int
    deadline: int              # unix seconds; the executor drops the action after it
    event_id: str = ""         # the event (ring sequence / tx hash) that prompted it
    deadline_block: int = 0    # the contract reverts Expired() when mined after it (0: none)
    notes: dict = field(default_factory=dict)
