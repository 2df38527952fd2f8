"""Opportunity search: for the pools an event touched, the best input for every cycle through them.

    event touches pool P ──► graph.cycles_through(P)   (2-pool cycles, then up to max_hops)
        │  screen (floats, ~1 µs a cycle): compose the hops into one virtual constant-product
        │  pool (E0, E1); a cycle can pay only if E1 > E0·(1 + loan fee)
        ▼
    best few by estimated profit ──► exact optimum on the pools' own integer math
        all hops V2:  closed form  x* = √(E0·E1/(1+φ)) − E0  in exact rationals (integer sqrt),
                      then the exact integer neighbourhood of x*
        any V3 hop:   golden-section search on the exact profit (monotone-then-decreasing in
                      x), bracketed around the virtual-pool estimate and widened if the optimum
                      sits on an edge; then the exact neighbourhood of the best point
        ▼
    profit.evaluate (loan fee by lender, gas as the chain charges it) ──► Opportunity, best first

Composition of constant-product hops (why the closed form exists): one hop with reserves
(R_in, R_out) and fee factor γ pays out(x) = R_out·x / (R_in/γ + x), a fee-less pool (R_in/γ,
R_out).  A fee-less (E0, E1) followed by (R_in, R_out, γ) is again one: E0' = R_in·E0/(R_in + γ·E1),
E1' = γ·R_out·E1/(R_in + γ·E1).  For out(x) = E1·x/(E0 + x), d/dx[out − (1+φ)x] = 0 at
x = √(E0·E1/(1+φ)) − E0.  A V3 pool at price √P with liquidity L is, inside its current range,
the constant-product pool with virtual reserves (L/√P, L·√P).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

from engine.arb.graph import Cycle, PoolGraph
from engine.arb.profit import (GasModel, LoanBook, LoanOffer, Profit, evaluate, is_flash_swap,
                               loan_fee)
from engine.arb.types import Route
from engine.arb.v2 import InsufficientLiquidity, V2Pool
from engine.arb.v3 import Q96, V3MathError

INV_PHI = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class Opportunity:
    chain: str
    route: Route
    profit: Profit
    offer: LoanOffer
    trigger: str          # the pool whose event prompted the search
    method: str           # "closed-form" or "golden"
    evaluations: int      # exact route quotes spent

    @property
    def amount_in(self) -> int:
        return self.profit.amount_in

    @property
    def net(self) -> int:
        return self.profit.net


@dataclass
class SearchConfig:
    max_hops: int = 3           # cycles longer than the graph's max_hops are never built
    max_exact: int = 4          # cycles optimised on exact math per event (best estimates first)
    min_net_profit: int = 1     # in the profit token's smallest unit
    rel_tol: float = 1e-4       # golden-section stops at this fraction of the bracket's centre
    max_amount_multiple: float = 4.0  # golden search never tries more than this × the first
                                      # pool's (virtual) input reserve


@dataclass
class SearchStats:
    events: int = 0
    cycles_screened: int = 0
    cycles_optimised: int = 0
    evaluations: int = 0
    found: int = 0


class OpportunitySearch:
    """Stateless over the graph it is given: callers update pool states, then call `on_event`."""

    def __init__(self, graph: PoolGraph, gas: GasModel, loans: LoanBook | None = None,
                 config: SearchConfig | None = None, chain: str | None = None) -> None:
        self.graph = graph
        self.gas = gas
        self.loans = loans or LoanBook()
        self.config = config or SearchConfig()
        self.chain = chain or gas.chain
        self.stats = SearchStats()

    def statistics(self) -> dict:
        return vars(self.stats).copy()

    # ------------------------------------------------------------------------------ entry
    def on_event(self, touched: Iterable[str]) -> list[Opportunity]:
        """Best opportunity per cycle through the touched pools, best net profit first."""
        cfg = self.config
        self.stats.events += 1
        seen: set[Cycle] = set()
        candidates: list[tuple[float, Cycle, str, Route, LoanOffer, tuple]] = []
        for addr in touched:
            if addr not in self.graph:
                continue
            for cycle in self.graph.cycles_through(addr):
                if len(cycle) > cfg.max_hops or cycle in seen:
                    continue
                seen.add(cycle)
                self.stats.cycles_screened += 1
                legs = self._legs(cycle)
                if legs is None:
                    continue
                e0, e1 = _compose(legs)
                if e1 <= e0:
                    continue  # no input pays even before the loan fee
                route = self.graph.route(cycle)
                best = None  # the cheapest lender for this cycle, by estimated profit
                for offer in self.loans.options(route):
                    phi = offer.fee_ppm / 1_000_000
                    x = math.sqrt(e0 * e1 / (1 + phi)) - e0
                    if x < 1:
                        continue
                    est = e1 * x / (e0 + x) - (1 + phi) * x
                    if best is None or est > best[0]:
                        best = (est, cycle, addr, route, offer, legs)
                if best is not None:
                    candidates.append(best)
        candidates.sort(key=lambda c: -c[0])
        found: dict[Cycle, Opportunity] = {}
        for est, cycle, trigger, route, offer, legs in candidates[:cfg.max_exact]:
            opp = self._optimise(cycle, route, offer, trigger, legs)
            self.stats.cycles_optimised += 1
            if opp is None or opp.net < cfg.min_net_profit:
                continue
            found[cycle] = opp
        out = sorted(found.values(), key=lambda o: -o.net)
        self.stats.found += len(out)
        return out

    # ------------------------------------------------------------------------------ pieces
    def _legs(self, cycle: Cycle) -> tuple | None:
        """(R_in, R_out, γ numerator, γ denominator, is V2) per hop (V2: exact integers; V3: float
        virtual reserves); None if a pool has no liquidity."""
        legs = []
        pools = self.graph.pools
        for addr, token_in in cycle:
            p = pools[addr]
            if isinstance(p, V2Pool):
                r_in, r_out = p.reserves_for(token_in)
                if r_in <= 0 or r_out <= 0:
                    return None
                legs.append((r_in, r_out, p.fee_denominator - p.fee_bps, p.fee_denominator, True))
            else:
                if p.liquidity <= 0:
                    return None
                x_v = p.liquidity * Q96 / p.sqrt_price_x96
                y_v = p.liquidity * p.sqrt_price_x96 / Q96
                r_in, r_out = (x_v, y_v) if token_in == p.token0 else (y_v, x_v)
                legs.append((r_in, r_out, 1_000_000 - p.fee, 1_000_000, False))
        return tuple(legs)

    def _objective(self, route: Route, offer: LoanOffer):
        graph = self.graph
        pools = [graph.pools[h.pool] for h in route.hops]
        tokens = [h.token_in for h in route.hops]
        flash = is_flash_swap(route, offer)
        counter = [0]

        def f(x: int) -> int:
            """Exact out − repay at input x (the contract's view, before gas)."""
            counter[0] += 1
            a = x
            try:
                for p, t in zip(pools, tokens):
                    a = p.quote(t, a)
                    if a <= 0:
                        return -x
            except (InsufficientLiquidity, V3MathError):
                return -x
            return a - x - (0 if flash else loan_fee(offer.source, x, offer.fee_ppm))
        return f, counter

    def _optimise(self, cycle: Cycle, route: Route, offer: LoanOffer, trigger: str,
                  legs: tuple) -> Opportunity | None:
        f, counter = self._objective(route, offer)
        if all(leg[4] for leg in legs):
            x0 = _closed_form_exact(legs, offer.fee_ppm)
            if x0 is None:
                return None
            x, best = _neighbourhood(f, x0, 3)
            method = "closed-form"
        else:
            e0, e1 = _compose(legs)
            phi = offer.fee_ppm / 1_000_000
            est = max(1, int(math.sqrt(e0 * e1 / (1 + phi)) - e0))
            cap = max(4, int(legs[0][0] * self.config.max_amount_multiple))
            x, best = _golden_max(f, max(1, est // 4), min(cap, est * 4), cap,
                                  self.config.rel_tol)
            x, best = _neighbourhood(f, x, 2, (x, best))
            method = "golden"
        if best <= 0:
            return None
        try:
            profit = evaluate(self.graph, route, x, offer, self.gas)
        except (ValueError, InsufficientLiquidity, V3MathError):
            return None
        return Opportunity(self.chain, route, profit, offer, trigger, method, counter[0])


def _compose(legs: tuple) -> tuple[float, float]:
    e0 = e1 = None
    for leg in legs:
        r_in, r_out, g_num, g_den = leg[0], leg[1], leg[2], leg[3]
        g = g_num / g_den
        if e0 is None:
            e0, e1 = r_in / g, float(r_out)
        else:
            d = r_in + g * e1
            e0, e1 = r_in * e0 / d, g * r_out * e1 / d
    return e0, e1


def _closed_form_exact(legs: tuple, fee_ppm: int) -> int | None:
    """x* of an all-V2 cycle in exact rationals (then floored), or None if it cannot pay."""
    e0 = e1 = None
    for r_in, r_out, g_num, g_den, _ in legs:
        g = Fraction(g_num, g_den)
        if e0 is None:
            e0, e1 = Fraction(r_in) / g, Fraction(r_out)
        else:
            d = r_in + g * e1
            e0, e1 = r_in * e0 / d, g * r_out * e1 / d
    prod = e0 * e1 * 1_000_000 / (1_000_000 + fee_ppm)
    x = math.isqrt(prod.numerator // prod.denominator) - e0
    x = math.floor(x)
    return x if x >= 1 else None


def _neighbourhood(f, x0: int, k: int, known: tuple[int, int] | None = None) -> tuple[int, int]:
    """Best of f over x0-k .. x0+k (exact): the floors make the top flat to within wei."""
    best_x, best = known if known else (x0, f(x0))
    for x in range(max(1, x0 - k), x0 + k + 1):
        if x == best_x:
            continue
        v = f(x)
        if v > best:
            best_x, best = x, v
    return best_x, best


def _golden_max(f, lo: int, hi: int, cap: int, rel_tol: float) -> tuple[int, int]:
    """Maximum of a unimodal integer function: widen [lo, hi] while the top is on an edge,
    then golden-section until the bracket is within rel_tol of its centre."""
    lo = max(1, lo)
    hi = max(lo + 2, min(hi, cap))
    # widen upward while f still rises at the upper edge
    while hi < cap and f(hi) > f(hi - max(1, hi // 1000)):
        lo, hi = hi // 2, min(cap, hi * 4)
    a, b = lo, hi
    c = b - int((b - a) * INV_PHI)
    d = a + int((b - a) * INV_PHI)
    fc, fd = f(c), f(d)
    while b - a > max(2, int(rel_tol * (a + b) / 2)):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - int((b - a) * INV_PHI)
            fc = f(c) if c != d else fd
        else:
            a, c, fc = c, d, fd
            d = a + int((b - a) * INV_PHI)
            fd = f(d) if d != c else fc
    return (c, fc) if fc >= fd else (d, fd)
