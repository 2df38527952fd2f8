"""Opportunity search: for the pools an event touched, the best input for every cycle through them.

    event touches pool P ──► graph.cycles_through(P)   (2-pool cycles, then up to max_hops)
        │  screen (floats, ~1 µs a cycle): compose the hops into one virtual constant-product
        │  pool (E0, E1); a cycle can pay only if E1 > E0·(1 + loan fee)
        ▼
    best few by estimated profit ──► exact optimum on the pools' own integer math (after the
        │  first, only the cycles whose estimate comes within `refine_within` of the best net
        │  sized so far: the others cannot overtake it and are neither sized nor reported)
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
from typing import Iterable

from engine.arb.graph import Cycle, PoolGraph
from engine.arb.maximise import bracket, golden_max, neighbourhood, parabolic_max
from engine.arb.profit import (GasModel, LoanBook, LoanOffer, Profit, evaluate, is_flash_swap,
                               loan_fee)
from engine.arb.types import Hop, Route  # noqa: F401 (Hop: the cache's type)
from engine.arb.v2 import InsufficientLiquidity, V2Pool
from engine.arb.v3 import Q96, V3MathError



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


ROUTE_CACHE = 1 << 16   # cycles whose Route is kept (only cycles sized: bounded, but not small)


@dataclass
class SearchConfig:
    max_hops: int = 3           # cycles longer than the graph's max_hops are never built
    max_exact: int = 4          # cycles optimised on exact math per event (best estimates first)
    min_net_profit: int = 1     # in the profit token's smallest unit
    rel_tol: float = 1e-4       # golden-section stops at this fraction of the bracket's centre
    max_amount_multiple: float = 4.0  # golden search never tries more than this × the first
                                      # pool's (virtual) input reserve
    refine_within: float | None = 0.01  # after the first, a cycle is sized exactly only if its
                                        # float estimate (before gas) reaches this close to the
                                        # best net sized so far (None: size all max_exact)


@dataclass
class SearchStats:
    events: int = 0
    cycles_screened: int = 0
    cycles_optimised: int = 0
    cycles_pruned: int = 0      # events whose later candidates could not beat the best sized
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
        # the screen's cache (see _leg)
        self._leg_ids: dict[tuple[str, str], int] = {}
        self._rate: list[float] = []
        self._legs_f: list = []
        self._pool_legs: dict[str, list[tuple[int, str]]] = {}
        self._ids: dict[str, tuple] = {}
        self._synced = graph.version
        self._routes: dict[Cycle, Route] = {}     # a cycle's Route (pools' constants only)
        self._hops: dict[tuple[str, str], Hop] = {}   # a leg's Hop, built with the leg
        self._routes_of = graph.topology

    def statistics(self) -> dict:
        return vars(self.stats).copy()

    # ------------------------------------------------------------------------------ entry
    def on_event(self, touched: Iterable[str]) -> list[Opportunity]:
        """Best opportunity per cycle through the touched pools, best net profit first."""
        cfg = self.config
        graph = self.graph
        pools = graph.pools
        self.stats.events += 1
        touched = [a for a in touched if a in pools]
        self._sync()
        seen: set[Cycle] | None = set() if len(touched) > 1 else None
        candidates: list[tuple[float, int, Cycle, str, LoanOffer]] = []
        rate, legs_f = self._rate, self._legs_f
        screened = 0
        for addr in touched:
            for ids, cycle, offer, phi in self._cycle_ids(addr):
                if seen is not None:
                    if cycle in seen:
                        continue
                    seen.add(cycle)
                screened += 1
                # the marginal rate at zero input, one product of cached floats: most cycles
                # stop here (no input pays, even before the loan fee)
                n = len(ids)
                if n == 2:
                    i0, i1 = ids
                    if rate[i0] * rate[i1] <= 1.0:
                        continue
                    # the two hops composed into one fee-less virtual pool (E0, E1), in floats
                    r0, s0, g0 = legs_f[i0]
                    r1, s1, g1 = legs_f[i1]
                    d = r1 + g1 * s0
                    e0, e1 = r1 * r0 / (g0 * d), g1 * s1 * s0 / d
                else:
                    if n == 3:
                        if rate[ids[0]] * rate[ids[1]] * rate[ids[2]] <= 1.0:
                            continue
                    elif math.prod(rate[i] for i in ids) <= 1.0:
                        continue
                    r_in, r_out, g = legs_f[ids[0]]
                    e0, e1 = r_in / g, r_out
                    for i in ids[1:]:
                        r_in, r_out, g = legs_f[i]
                        d = r_in + g * e1
                        e0, e1 = r_in * e0 / d, g * r_out * e1 / d
                x = math.sqrt(e0 * e1 / (1 + phi)) - e0
                if x < 1:
                    continue
                # (-est, arrival): a native sort, best estimate first, ties in cycle order
                candidates.append((-(e1 * x / (e0 + x) - (1 + phi) * x), len(candidates),
                                   cycle, addr, offer))
        self.stats.cycles_screened += screened
        candidates.sort()
        found: dict[Cycle, Opportunity] = {}
        best = None
        for neg_est, _, cycle, trigger, offer in candidates[:cfg.max_exact]:
            est = -neg_est
            if best is not None and best > 0 and cfg.refine_within is not None \
                    and est < best * (1 - cfg.refine_within):
                # est is this cycle's float optimum before gas, all but exact inside the pools'
                # current ranges, and its net is less: it cannot overtake the best one sized,
                # and neither can the ones after it (sorted by est).  Sizing it would cost
                # ~5 exact route quotes (~70 µs with a V3 hop) for an opportunity nobody takes.
                self.stats.cycles_pruned += 1
                break
            legs = self._legs(cycle)
            if legs is None:
                continue
            opp = self._optimise(cycle, self._route(cycle), offer, trigger, legs)
            self.stats.cycles_optimised += 1
            if opp is None or opp.net < cfg.min_net_profit:
                continue
            found[cycle] = opp
            if best is None or opp.net > best:
                best = opp.net
        out = sorted(found.values(), key=lambda o: -o.net)
        self.stats.found += len(out)
        return out

    # ------------------------------------------------------------------------------ the screen's cache
    # Every leg (pool, token sold) has an index into two flat lists: its marginal rate at zero
    # input γ·R_out/R_in (`_rate`) and its float (R_in, R_out, γ) (`_legs_f`; V3: the virtual
    # reserves of its current range).  They follow the graph's change log (`_sync`), so a
    # screen reads floats by index instead of touching pool objects; each pool's cycles are kept
    # as tuples of leg indexes (`_cycle_ids`), rebuilt when the graph's topology changes.
    def _leg(self, addr: str, token_in: str) -> int:
        key = (addr, token_in)
        i = self._leg_ids.get(key)
        if i is None:
            i = self._leg_ids[key] = len(self._rate)
            self._rate.append(0.0)
            self._legs_f.append(None)
            self._pool_legs.setdefault(addr, []).append((i, token_in))
            self._hops[key] = self.graph.hop(addr, token_in)
            self._refresh(addr)
        return i

    def _refresh(self, addr: str) -> None:
        p = self.graph.pools.get(addr)
        legs = self._pool_legs.get(addr)
        if p is None or not legs:
            return
        if isinstance(p, V2Pool):
            g = (p.fee_denominator - p.fee_bps) / p.fee_denominator
            r0, r1 = float(p.reserve0), float(p.reserve1)
        else:
            g = (1_000_000 - p.fee) / 1_000_000
            sp = p.sqrt_price_x96 / Q96
            r0, r1 = (p.liquidity / sp, p.liquidity * sp) if sp > 0 else (0.0, 0.0)
        ok = r0 > 0 and r1 > 0
        for i, t in legs:
            r_in, r_out = (r0, r1) if t == p.token0 else (r1, r0)
            # a dead leg rates 0 (never passes the screen); its legs stay positive for the
            # arithmetic of a multi-touched event that never reaches them
            self._rate[i] = g * r_out / r_in if ok else 0.0
            self._legs_f[i] = (r_in, r_out, g) if ok else (1.0, 1.0, 1.0)

    def _sync(self) -> None:
        """Catch the float legs up with the graph's state changes since the last event."""
        graph = self.graph
        changed = graph.changed_since(self._synced)
        if changed is None:
            changed = list(self._pool_legs)
        for addr in set(changed) if len(changed) > 8 else changed:
            if addr in self._pool_legs:
                self._refresh(addr)
        self._synced = graph.version

    def prepare(self, addr: str) -> int:
        """Build the cycles through `addr` and their screen entries now (background work), so
        the pool's next event finds them built: cold, a 1 000-pool graph's pool costs
        200-600 µs here, which inside a switch was the two-pool search's p99.  Returns how many
        cycles the pool's screen holds."""
        if addr not in self.graph.pools:
            return 0
        return len(self._cycle_ids(addr))

    def _cycle_ids(self, addr: str) -> list:
        """(leg indexes, cycle, its lender, the lender's fee as a fraction) of every cycle
        through `addr` that some lender can fund; the lender is the cheapest (the estimate
        falls with the fee; the flash swap first on a tie), fixed while the topology is."""
        cycles = self.graph.cycles_through(addr)
        c = self._ids.get(addr)
        n_offers = len(self.loans.offers)
        if c is None or c[0] is not cycles or c[1] != n_offers:
            leg, best_offer, pools = self._leg, self.loans.best_offer, self.graph.pools
            entries = []
            for cycle in cycles:
                if len(cycle) > self.config.max_hops:
                    continue
                offer = best_offer(cycle[0][1], cycle[0][0],
                                   isinstance(pools[cycle[0][0]], V2Pool), cycle)
                if offer is not None:
                    entries.append((tuple(leg(a, t) for a, t in cycle), cycle, offer,
                                    offer.fee_ppm / 1_000_000))
            c = self._ids[addr] = (cycles, n_offers, entries)
        return c[2]

    def _route(self, cycle: Cycle) -> Route:
        """graph.route(cycle), built once while the topology stands (a Route is the pools'
        constants: kind, tokens, fee, dex; ~8 µs to build, once per cycle sized before)."""
        if self._routes_of != self.graph.topology or len(self._routes) > ROUTE_CACHE:
            self._routes.clear()
            self._routes_of = self.graph.topology
        r = self._routes.get(cycle)
        if r is None:
            hops = self._hops
            try:
                r = Route(tuple(hops[leg] for leg in cycle))
            except KeyError:            # a leg not indexed yet (prepare builds them)
                r = self.graph.route(cycle)
            self._routes[cycle] = r
        return r

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
            x, best = neighbourhood(f, x0, 2)
            method = "closed-form"
        else:
            e0, e1 = _compose(legs)
            phi = offer.fee_ppm / 1_000_000
            est = max(1, int(math.sqrt(e0 * e1 / (1 + phi)) - e0))
            cap = max(4, int(legs[0][0] * self.config.max_amount_multiple))
            # Inside the pools' current tick ranges the virtual-pool estimate is all but exact:
            # bracket the maximum with points ±BRACKET around it (walking outward, the step
            # doubling, while the profit still rises: ticks crossed move the top), then
            # successive parabolas; the wide golden search only if that fails.
            around = bracket(f, est, cap) if est < cap else None
            if around is not None:
                x, best = parabolic_max(f, *around, self.config.rel_tol)
            else:
                x, best = golden_max(f, max(1, est // 4), min(cap, est * 4), cap,
                                      self.config.rel_tol)
                x, best = neighbourhood(f, x, 1, (x, best))
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
    """x* of an all-V2 cycle in exact rationals (then floored), or None if it cannot pay.

    The composed pool is kept as E0 = A/Q, E1 = B/Q over one integer denominator (a Fraction
    per step cost more than the rest of the search): a hop (r, s, γ = n/m) after it gives
    Q' = r·m·Q + n·B, A' = r·m·A, B' = n·s·B."""
    a = b = q = None
    for r_in, r_out, g_num, g_den, _ in legs:
        if a is None:
            a, b, q = r_in * g_den, r_out * g_num, g_num
        else:
            a, b, q = r_in * g_den * a, g_num * r_out * b, r_in * g_den * q + g_num * b
    # floor(isqrt(floor(E0·E1·(1e6/(1e6+fee)))) − E0) = isqrt(...) − ceil(A/Q)
    x = math.isqrt(a * b * 1_000_000 // (q * q * (1_000_000 + fee_ppm))) + (-a // q)
    return x if x >= 1 else None
