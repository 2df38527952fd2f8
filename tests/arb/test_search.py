"""The search finds the exact-math optimum on constructed gaps (checked by brute force)."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from arbhelp import D, U, W, aave, balancer, make_search
from engine.arb.graph import PoolGraph
from engine.arb.profit import GasModel, route_amounts
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool, get_sqrt_ratio_at_tick


def brute_best(graph, route, lo, hi):
    """argmax over every integer input of out(x) − x, hop by hop on the pools' own quotes."""
    hops = [(graph.pools[h.pool].quote, h.token_in) for h in route.hops]
    best_x, best = None, None
    for x in range(lo, hi + 1):
        a = x
        for quote, t in hops:
            a = quote(t, a) if a > 0 else 0
        if a > 0 and (best is None or a - x > best):
            best_x, best = x, a - x
    return best_x, best


@settings(max_examples=20, deadline=None)
@given(st.integers(1_000, 5_000), st.integers(1_000, 5_000), st.integers(1_000, 5_000),
       st.integers(1_000, 5_000), st.sampled_from([30, 25, 5]))
def test_two_pool_optimum_equals_brute_force(a0, a1, b0, b1, fee):
    pa = V2Pool("0xA", U, W, a0, a1, fee)
    pb = V2Pool("0xB", U, W, b0, b1, 30)
    s = make_search([pa, pb], GasModel.arbitrum(W, 0), [balancer(W), balancer(U)], max_hops=2)
    found = s.on_event(["0xA"])
    for opp in found:
        x, best = brute_best(s.graph, opp.route, 1, 6_000)
        # the closed form lands on the exact-math optimum, up to a rounding unit per hop
        assert best - len(opp.route.hops) <= opp.profit.gross <= best, (opp.amount_in, x)
    # and when the search finds nothing, brute force agrees there is nothing worth a unit
    if not found:
        for cycle in s.graph.cycles_through("0xA"):
            _, best = brute_best(s.graph, s.graph.route(cycle), 1, 6_000)
            assert best is None or best <= len(cycle)


def test_three_hop_triangle_brute_force(free_gas):
    # W -> U -> D -> W with a gap on the D/W pool
    pools = [V2Pool("0x1", U, W, 200_000, 100_000), V2Pool("0x2", D, U, 300_000, 300_000),
             V2Pool("0x3", D, W, 300_000, 140_000)]
    s = make_search(pools, free_gas, [balancer(W)])
    found = s.on_event(["0x3"])
    assert found and all(len(o.route.hops) == 3 for o in found)
    best = found[0]
    _, brute = brute_best(s.graph, best.route, 1, 50_000)
    assert best.profit.gross == brute
    assert best.route.token == W  # profit counted in the preferred base token


def v3_pool(address, price_tick, liquidity, fee=3000, spacing=60, t0=U, t1=W):
    return V3Pool.from_liquidity_ranges(
        address, t0, t1, fee, get_sqrt_ratio_at_tick(price_tick),
        [(price_tick // spacing * spacing - 600, price_tick // spacing * spacing + 600, liquidity),
         (price_tick // spacing * spacing - 6000, price_tick // spacing * spacing + 6000, liquidity // 3)],
        tick_spacing=spacing)


def test_mixed_v2_v3_golden_search_matches_dense_scan(free_gas):
    rng = random.Random(3)
    for _ in range(5):
        tick = rng.randrange(-1000, 1000)
        v3 = v3_pool("0xA", tick, rng.randrange(10**6, 10**8))
        price = 1.0001 ** tick  # W per U
        r_u = rng.randrange(10**9, 10**11)
        gap = 1 + rng.choice([-1, 1]) * rng.uniform(0.01, 0.05)
        v2 = V2Pool("0xB", U, W, r_u, int(r_u * price * gap))
        s = make_search([v3, v2], free_gas, [balancer(W), balancer(U)], max_hops=2)
        found = s.on_event(["0xA"])
        assert found, "a 1-5 % gap over 0.6 % of fees must pay"
        o = found[0]
        assert o.method == "golden"
        xs = sorted({max(1, int(o.amount_in * (1 + k / 200))) for k in range(-150, 151)})
        dense = max(route_amounts(s.graph, o.route, x)[-1] - x for x in xs)
        assert o.profit.gross >= dense - len(o.route.hops)  # a unit of rounding per hop


def test_gap_smaller_than_fees_is_never_found(free_gas):
    # two 0.3 % pools: a round trip costs ~0.6 %; a 0.5 % gap cannot pay
    pa = V2Pool("0xA", U, W, 2_000_000 * 10**6, 1000 * 10**18)
    pb = V2Pool("0xB", U, W, 2_010_000 * 10**6, 1000 * 10**18)
    s = make_search([pa, pb], free_gas, [balancer(W), balancer(U)])
    assert s.on_event(["0xA", "0xB"]) == []


@settings(max_examples=60, deadline=None)
@given(st.integers(10**9, 10**13), st.floats(0.0, 0.0059), st.booleans())
def test_any_gap_under_two_fees_is_never_profitable(reserve, gap, which):
    r_w = reserve * 10**9
    pa = V2Pool("0xA", U, W, reserve, r_w)
    pb = V2Pool("0xB", U, W, int(reserve * (1 + gap)), r_w)
    s = make_search([pa, pb] if which else [pb, pa], GasModel.arbitrum(W, 0),
                    [balancer(W), balancer(U)])
    for o in s.on_event(["0xA"]):
        assert o.profit.gross <= 1 and o.net < 1  # at most a rounding wei, never reported


def test_loan_fee_moves_the_optimum_and_is_paid(free_gas):
    pa = V2Pool("0xA", U, W, 2_000_000 * 10**6, 1000 * 10**18)
    pb = V2Pool("0xB", U, W, 2_100_000 * 10**6, 1000 * 10**18)
    free = make_search([pa, pb], free_gas, [balancer(W)], v2_flash=False).on_event(["0xA"])[0]
    paid = make_search([pa, pb], free_gas, [aave(W)], v2_flash=False).on_event(["0xA"])[0]
    assert paid.amount_in < free.amount_in
    assert paid.profit.loan.fee == (paid.amount_in * 5 + 5_000) // 10_000
    assert paid.profit.gross == paid.profit.amount_out - paid.amount_in - paid.profit.loan.fee
    assert paid.profit.gross < free.profit.gross


def test_flash_swap_is_the_first_hop(free_gas):
    pa = V2Pool("0xA", U, W, 2_000_000 * 10**6, 1000 * 10**18)
    pb = V2Pool("0xB", U, W, 2_100_000 * 10**6, 1000 * 10**18)
    o = make_search([pa, pb], free_gas).on_event(["0xA"])[0]
    loan = o.profit.loan
    assert loan.lender == o.route.hops[0].pool and loan.token == o.route.token
    assert loan.amount == o.amount_in and loan.fee == 0 and o.profit.repay == o.amount_in


def test_cycles_through_a_pool():
    pools = [V2Pool("0x1", U, W, 1, 1), V2Pool("0x2", U, W, 1, 1), V2Pool("0x3", D, W, 1, 1),
             V2Pool("0x4", D, U, 1, 1)]
    g2 = PoolGraph(pools, max_hops=2)
    assert len(g2.cycles_through("0x1")) == 2          # 0x1<->0x2, both directions
    g3 = PoolGraph(pools, max_hops=3, base_tokens=[W])
    c = g3.cycles_through("0x1")
    assert len(c) == 4                                  # + 0x1,0x4,0x3 both ways
    assert all(g3.route(x).token == W and g3.route(x).is_cycle for x in c)


def test_search_is_bounded_to_max_exact(free_gas):
    rng = random.Random(1)
    pools = [V2Pool(f"0x{i:02d}", U, W, rng.randrange(10**12, 10**13), rng.randrange(10**21, 10**22))
             for i in range(30)]
    s = make_search(pools, free_gas, max_hops=2, max_exact=4)
    found = s.on_event(["0x00"])
    assert len(found) <= 4
    assert s.stats.cycles_optimised <= 4


def test_only_contenders_are_sized_and_the_best_is_the_same(free_gas):
    """After the best estimate is sized, a cycle is sized only if its float estimate (before
    gas) reaches within refine_within of the best net so far: the others cannot overtake it.
    The best opportunity is the one sizing every cycle finds; what is reported is a subset."""
    rng = random.Random(5)
    pruned = 0
    for trial in range(20):
        pools = [v3_pool("0xA", rng.randrange(-500, 500), rng.randrange(10**7, 10**8))]
        price = 1.0001 ** rng.randrange(-500, 500)
        for i in range(6):
            r_u = rng.randrange(10**9, 10**11)
            pools.append(V2Pool(f"0xB{i}", U, W, r_u, int(r_u * price * (1 + rng.uniform(-.03, .03)))))
        every = make_search(pools, free_gas, max_hops=2, max_exact=4)
        every.config.refine_within = None
        some = make_search(pools, free_gas, max_hops=2, max_exact=4)
        a, b = every.on_event(["0xA"]), some.on_event(["0xA"])
        assert bool(a) == bool(b)
        if a:
            assert (a[0].route, a[0].amount_in, a[0].net) == (b[0].route, b[0].amount_in, b[0].net)
            assert {(o.route, o.net) for o in b} <= {(o.route, o.net) for o in a}
            for o in a:
                if (o.route, o.net) not in {(x.route, x.net) for x in b}:
                    assert o.net < b[0].net * (1 - some.config.refine_within)
        pruned += some.stats.cycles_pruned
        assert some.stats.cycles_optimised <= every.stats.cycles_optimised
    assert pruned >= 5     # the shortcut was taken, not just allowed
