"""Profit net of every fee: route output − input − loan fee − gas, all in the profit token.

    profit = out − repay − gas_in_token
    repay  = amount_in + loan fee           (Aave premium, V3 pool.flash fee, Balancer fee: 0,
                                             a V2 pair lending its own token: ceil(a·1000/997) − a)
           = amount_in                      (Uniswap V2 flash swap on the route's first pair: the
                                             loan *is* hop 0 — receive getAmountOut(amount_in)
                                             first, pay amount_in last, which is >= getAmountIn
                                             of that output on the pre-swap reserves, so the
                                             pair's K check passes; the 0.3 % is hop 0's fee)
    gas    = units × price as the chain charges it (GasModel), converted into the profit token
             at the price of the chain's own pools (no oracle, no I/O)

The chain layer measures what this module cannot (base fee, priority fee, OP-stack L1 fee,
eth_estimateGas) and hands the numbers in; nothing here fetches.  Every amount is an exact
integer; fees and gas round against us (up), so a gap smaller than the fees never shows a profit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from engine.arb.graph import Pool, PoolGraph
from engine.arb.types import Loan, LoanSource, PoolKind, Route
from engine.arb.v2 import V2Pool
from engine.arb.v3 import Q96

GWEI = 10**9


# ------------------------------------------------------------------------------------- loans
@dataclass(frozen=True)
class LoanOffer:
    """A lender the executor can borrow `token` from.  fee_ppm: parts per million of the amount
    (Aave V3 5 bps = 500, a V3 pool's fee tier for pool.flash, Balancer 0)."""
    source: LoanSource
    lender: str
    token: str
    fee_ppm: int = 0
    max_amount: int | None = None


def loan_fee(source: LoanSource, amount: int, fee_ppm: int) -> int:
    """The fee each lender charges, rounded as the lender rounds it."""
    if source is LoanSource.AAVE:
        # Aave PercentageMath.percentMul (bps over 1e4, rounds half up): premium = amount.percentMul(5)
        bps, rem = divmod(fee_ppm, 100)
        if rem:
            return -(-amount * fee_ppm // 1_000_000)  # a non-bps premium: round up
        return (amount * bps + 5_000) // 10_000
    if source is LoanSource.UNISWAP_V3:
        # UniswapV3Pool.flash: FullMath.mulDivRoundingUp(amount, fee, 1e6)
        return -(-amount * fee_ppm // 1_000_000)
    if source is LoanSource.BALANCER:
        # Vault: FixedPoint.mulUp(amount, flashLoanFeePercentage); 0 today
        return -(-amount * fee_ppm // 1_000_000)
    if source is LoanSource.UNISWAP_V2:
        # borrowing and repaying the *same* token of a pair: (amount + fee)*997 >= amount*1000
        d, f = 1_000_000, fee_ppm or 3_000
        return -(-amount * d // (d - f)) - amount
    raise ValueError(f"unknown loan source {source}")


@dataclass
class LoanBook:
    """The lenders available on one chain.  A route whose first hop is a V2 pair can always be
    a flash swap on that pair (no fee beyond the hop's own swap fee), unless disabled."""
    offers: list[LoanOffer] = field(default_factory=list)
    v2_flash_swap: bool = True
    # the search's lookups: token -> offers cheapest first, pair -> its flash-swap offer
    _by_token: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _flash: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _indexed: int = field(default=-1, init=False, repr=False, compare=False)

    def best_offer(self, token: str, first_pool: str, first_is_v2: bool,
                   cycle=()) -> LoanOffer | None:
        """The offer `options` would rank first for a route of `cycle`'s legs ((pool, token_in)
        pairs) starting in `token` at `first_pool`: the cheapest, the flash swap first on a tie
        (every estimate falls with the fee), without building the route."""
        if self.v2_flash_swap and first_is_v2:
            o = self._flash.get(first_pool)
            if o is None or o.token != token:
                o = self._flash[first_pool] = LoanOffer(LoanSource.UNISWAP_V2, first_pool, token, 0)
            return o
        if self._indexed != len(self.offers):
            self._by_token.clear()
            for o in sorted(self.offers, key=lambda o: o.fee_ppm):   # stable: list order on ties
                self._by_token.setdefault(o.token, []).append(o)
            self._indexed = len(self.offers)
        for o in self._by_token.get(token, ()):
            if all(o.lender != a for a, _ in cycle):
                return o
        return None

    def options(self, route: Route) -> list[LoanOffer]:
        pools = {h.pool for h in route.hops}
        out = []
        first = route.hops[0]
        if self.v2_flash_swap and first.kind is PoolKind.V2:
            out.append(LoanOffer(LoanSource.UNISWAP_V2, first.pool, route.token, 0))
        for o in self.offers:
            # a V3/V2 lender locked by its own flash cannot be swapped in by the route
            if o.token == route.token and o.lender not in pools:
                out.append(o)
        return out


# ---------------------------------------------------------------------------------------- gas
@dataclass(frozen=True)
class GasModel:
    """What a transaction costs on one chain; inputs come from the chain layer.

    style   "arbitrum": eth_estimateGas already counts the L1 part in gas units; the sequencer
                        charges the base fee (priority is ignored) — never add an L1 fee.
            "op-stack": L2 execution gas × price + GasPriceOracle.getL1Fee(tx) (the oracle at
                        0x420000000000000000000000000000000000000F), passed in as l1_fee_wei.
            "polygon":  the priority fee is at least the network minimum (25 gwei, 30 since
                        2023); bids below it are not mined.
            "ethereum": plain EIP-1559.
    """
    chain: str
    style: str
    native_token: str               # the wrapped native token, for conversion into the profit token
    base_fee_wei: int
    priority_fee_wei: int = 0
    min_priority_fee_wei: int = 0
    l1_fee_wei: int = 0
    base_fee_headroom: int = 2      # max_fee = headroom × base + priority (two blocks of +12.5 %... and more)

    def __post_init__(self) -> None:
        if self.style not in ("arbitrum", "op-stack", "polygon", "ethereum"):
            raise ValueError(f"unknown gas style {self.style!r}")
        if self.style != "op-stack" and self.l1_fee_wei:
            raise ValueError(f"{self.chain}: an L1 fee applies only to OP-stack chains"
                             + (" (Arbitrum's eth_estimateGas already includes the L1 part)"
                                if self.style == "arbitrum" else ""))

    @classmethod
    def arbitrum(cls, native_token: str, base_fee_wei: int, chain: str = "arbitrum") -> "GasModel":
        return cls(chain, "arbitrum", native_token, base_fee_wei)

    @classmethod
    def op_stack(cls, native_token: str, base_fee_wei: int, priority_fee_wei: int, l1_fee_wei: int,
                 chain: str = "base") -> "GasModel":
        return cls(chain, "op-stack", native_token, base_fee_wei, priority_fee_wei, 0, l1_fee_wei)

    @classmethod
    def polygon(cls, native_token: str, base_fee_wei: int, priority_fee_wei: int = 0,
                min_priority_fee_wei: int = 30 * GWEI, chain: str = "polygon") -> "GasModel":
        return cls(chain, "polygon", native_token, base_fee_wei, priority_fee_wei, min_priority_fee_wei)

    @property
    def priority(self) -> int:
        if self.style == "arbitrum":
            return 0
        return max(self.priority_fee_wei, self.min_priority_fee_wei)

    def bid(self) -> tuple[int, int]:
        """(max_fee_per_gas, max_priority_fee_per_gas) for the transaction."""
        prio = self.priority
        return self.base_fee_headroom * self.base_fee_wei + prio, prio

    def cost_wei(self, gas_units: int) -> int:
        """Expected cost: the effective price is base + priority (at most max_fee)."""
        cost = gas_units * (self.base_fee_wei + self.priority)
        if self.style == "op-stack":
            cost += self.l1_fee_wei
        return cost

    def worst_cost_wei(self, gas_units: int) -> int:
        """Cost if the base fee rises to the bid's ceiling (used for the contract's min profit)."""
        cost = gas_units * self.bid()[0]
        if self.style == "op-stack":
            cost += self.l1_fee_wei
        return cost


# static gas estimates (used until the chain supplies eth_estimateGas for the exact calldata),
# fitted to eth_estimateGas of FlashArbExecutor.execute on the devnet (anvil, real Uniswap V2/V3,
# Balancer and the devnet's Aave-style lender; 2026-12-02, 240 routes found by the search after
# big swaps): V2 flash swap two V2 hops 209-255 k, three 304-339 k; V2 + V3 220-284 k; Balancer
# loan +59-81 k over a flash swap, Aave +161-169 k; V3 hops with tick crossings up to 680 k for
# three.  The first constants (45 k base, 55 k a V2 hop, 85 k a V3 hop) ran 26-95 % short, and a
# transaction sent with that limit runs out of gas.  UNISWAP_V3 (pool.flash) is not measured.
GAS_BASE = 20_000
GAS_PER_V2_HOP = 95_000
GAS_PER_V3_HOP = 105_000
GAS_PER_TICK_CROSSED = 25_000
GAS_LOAN = {LoanSource.UNISWAP_V2: 0, LoanSource.UNISWAP_V3: 50_000, LoanSource.AAVE: 165_000,
            LoanSource.BALANCER: 70_000}


def estimate_gas(route: Route, loan_source: LoanSource, ticks_crossed: int = 0) -> int:
    units = GAS_BASE + GAS_LOAN[loan_source] + GAS_PER_TICK_CROSSED * ticks_crossed
    for h in route.hops:
        units += GAS_PER_V2_HOP if h.kind is PoolKind.V2 else GAS_PER_V3_HOP
    return units


# ------------------------------------------------------------------------- price from the pools
def _pool_rate(pool: Pool, token_in: str) -> tuple[int, int]:
    """Mid price of token_in in the other token as an exact ratio (num, den), before fees."""
    if isinstance(pool, V2Pool):
        r_in, r_out = pool.reserves_for(token_in)
        return r_out, r_in
    s2 = pool.sqrt_price_x96 * pool.sqrt_price_x96   # token1 per token0 × 2^192
    return (s2, Q96 * Q96) if token_in == pool.token0 else (Q96 * Q96, s2)


def _depth(pool: Pool, token: str) -> int:
    """How much of `token` backs the price (reserves, or V3 virtual reserves), for ranking."""
    if isinstance(pool, V2Pool):
        return pool.reserves_for(token)[0]
    if token == pool.token0:
        return pool.liquidity * Q96 // max(pool.sqrt_price_x96, 1)
    return pool.liquidity * pool.sqrt_price_x96 // Q96


def convert(graph: PoolGraph, amount: int, token_from: str, token_to: str,
            round_up: bool = True) -> int | None:
    """`amount` of token_from valued in token_to at the deepest pool's mid price, directly or via
    one intermediate token; None when no path exists.  Rounds up by default (gas is a cost)."""
    if token_from == token_to or amount == 0:
        return amount
    # the rate, cached per token pair with the pools it was read from: it stays valid until
    # one of those pools changes (a decision converts gas several times, and every event
    # changes the graph: re-reading the 30-odd WETH/USDC pools each time cost ~70 µs)
    best = _cached_rate(graph, token_from, token_to)
    if best is None:
        return None
    num, den = best
    return -(-amount * num // den) if round_up else amount * num // den


def _cached_rate(graph: PoolGraph, a: str, b: str) -> tuple[int, int] | None:
    """_best_rate (else _two_hop_rate) of the graph's current state, cached per pair: a direct
    pair keeps every pool's depth, so a change to one of its pools re-reads that pool only
    (re-reading the 30-odd WETH/USDC pools on each of their events cost ~70 µs); a topology
    change, a change log that no longer reaches back, or a two-hop rate reads everything."""
    cache = graph.rates
    key = (a, b)
    hit = cache.get(key)
    version, topology = graph.version, graph.topology
    if hit is not None and hit[3] == topology:
        rate, depths, at, _ = hit
        if at == version:
            return rate
        changed = graph.changed_since(at)
        if changed is not None and depths is not None:
            pools = graph.pools
            moved = [x for x in set(changed) if x in depths] if changed else ()
            for x in moved:
                depths[x] = _depth(pools[x], a)
            if moved:
                rate = _pool_rate(pools[_deepest(depths)], a)
            cache[key] = (rate, depths, version, topology)
            return rate
    addrs = graph.by_token.get(a, set()) & graph.by_token.get(b, set())
    if addrs:
        depths = {x: _depth(graph.pools[x], a) for x in addrs}
        rate = _pool_rate(graph.pools[_deepest(depths)], a)
    else:
        depths, rate = None, _two_hop_rate(graph, a, b)   # valid for this state only
    cache[key] = (rate, depths, version, topology)
    return rate


def _deepest(depths: dict) -> str:
    """The address of the deepest pool; ties to the lowest address."""
    top = max(depths.values())
    return min(x for x, d in depths.items() if d == top)


def _best_rate(graph: PoolGraph, a: str, b: str) -> tuple[int, int] | None:
    """The rate of the deepest (a, b) pool (_deepest)."""
    addrs = graph.by_token.get(a, set()) & graph.by_token.get(b, set())
    if not addrs:
        return None
    return _pool_rate(graph.pools[_deepest({x: _depth(graph.pools[x], a) for x in addrs})], a)


def _two_hop_rate(graph: PoolGraph, a: str, b: str) -> tuple[int, int] | None:
    best, best_depth = None, -1
    for addr in graph.by_token.get(a, ()):
        mid = graph.pools[addr].other(a)
        second = _best_rate(graph, mid, b)
        if second is None:
            continue
        d = _depth(graph.pools[addr], a)
        if d > best_depth:
            first = _pool_rate(graph.pools[addr], a)
            best, best_depth = (first[0] * second[0], first[1] * second[1]), d
    return best


# ---------------------------------------------------------------------------- exact evaluation
def route_amounts(graph: PoolGraph, route: Route, amount_in: int) -> list[int]:
    """Exact output of every hop for `amount_in` (each pool's own contract math)."""
    amounts = [amount_in]
    a = amount_in
    pools = graph.pools
    for h in route.hops:
        a = pools[h.pool].quote(h.token_in, a)
        if a <= 0:
            raise ValueError(f"hop through {h.pool} returns nothing for {amounts[-1]}")
        amounts.append(a)
    return amounts


@dataclass(frozen=True)
class Profit:
    """Every term of one route at one input amount, in the profit token (route.token)."""
    amount_in: int
    amounts: tuple[int, ...]          # input, then each hop's output
    loan: Loan
    repay: int                        # what goes back to the lender, in route.token
    gas_units: int
    gas_cost_wei: int
    gas_cost_token: int               # gas valued in route.token (rounded up)
    gross: int                        # out − repay (what the contract keeps)
    net: int                          # gross − gas_cost_token

    @property
    def amount_out(self) -> int:
        return self.amounts[-1]


def is_flash_swap(route: Route, offer: LoanOffer) -> bool:
    """A V2 flash swap on the route's first pair: the loan is hop 0 itself, no extra fee."""
    return offer.source is LoanSource.UNISWAP_V2 and offer.lender == route.hops[0].pool


def repayment(route: Route, offer: LoanOffer, amount_in: int) -> tuple[Loan, int]:
    """The loan for `amount_in` (as the executor takes it) and what goes back to the lender."""
    if is_flash_swap(route, offer):
        return Loan(offer.source, offer.lender, route.token, amount_in, 0), amount_in
    fee = loan_fee(offer.source, amount_in, offer.fee_ppm)
    return Loan(offer.source, offer.lender, offer.token, amount_in, fee), amount_in + fee


def evaluate(graph: PoolGraph, route: Route, amount_in: int, offer: LoanOffer, gas: GasModel,
             gas_units: int | None = None, ticks_crossed: int = 0) -> Profit:
    """Exact profit of `route` at `amount_in` borrowed from `offer`, net of the loan and gas."""
    amounts = route_amounts(graph, route, amount_in)
    loan, repay = repayment(route, offer, amount_in)
    units = gas_units if gas_units is not None else estimate_gas(route, offer.source, ticks_crossed)
    cost_wei = gas.cost_wei(units)
    cost_token = convert(graph, cost_wei, gas.native_token, route.token)
    if cost_token is None:
        raise ValueError(f"no pool prices {route.token} against the native token {gas.native_token}")
    gross = amounts[-1] - repay
    return Profit(amount_in, tuple(amounts), loan, repay, units, cost_wei, cost_token, gross,
                  gross - cost_token)


def gas_in_token(graph: PoolGraph, gas: GasModel, gas_wei: int, token: str) -> int | None:
    return convert(graph, gas_wei, gas.native_token, token)


__all__: Sequence[str] = (
    "LoanOffer", "LoanBook", "loan_fee", "GasModel", "estimate_gas", "convert", "route_amounts",
    "Profit", "repayment", "is_flash_swap", "evaluate", "gas_in_token",
)
