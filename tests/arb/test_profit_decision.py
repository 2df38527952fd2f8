"""Profit counts every fee; the decision refuses stale, unsimulatable and losing routes."""
from __future__ import annotations

import orjson
import pytest

from arbhelp import U, W, aave, balancer, make_search
from engine.arb.decision import Decider, DecisionConfig, Simulation, StateInfo
from engine.arb.profit import GWEI, GasModel, convert, estimate_gas, loan_fee, route_amounts
from engine.arb.types import LoanSource
from engine.arb.v2 import V2Pool

NOW = 1_700_000_000.0


def gap_pools(gap_ppm: int, depth: int = 1):
    pa = V2Pool("0xA", U, W, depth * 2_000_000 * 10**6, depth * 1000 * 10**18)
    pb = V2Pool("0xB", U, W, depth * 2_000_000 * 10**6 * (1_000_000 + gap_ppm) // 1_000_000,
                depth * 1000 * 10**18)
    return [pa, pb]


def test_loan_fees_round_as_lenders_round():
    assert loan_fee(LoanSource.AAVE, 10**18, 500) == 5 * 10**14
    assert loan_fee(LoanSource.AAVE, 1999, 500) == 1          # half up: 0.9995 -> 1
    assert loan_fee(LoanSource.UNISWAP_V3, 10**6 + 1, 3000) == 3001   # mulDivRoundingUp
    assert loan_fee(LoanSource.BALANCER, 10**18, 0) == 0
    a = 10**18
    fee = loan_fee(LoanSource.UNISWAP_V2, a, 3000)
    assert (a + fee) * 997 >= a * 1000 > (a + fee - 1) * 997   # the pair's K check, tight


def test_gas_models_charge_as_each_chain_does():
    arb = GasModel.arbitrum(W, 10**7)
    assert arb.cost_wei(1_000_000) == 10**13 and arb.bid() == (2 * 10**7, 0)
    with pytest.raises(ValueError, match="already includes the L1"):
        GasModel("arbitrum", "arbitrum", W, 10**7, l1_fee_wei=1)
    base = GasModel.op_stack(W, 10**6, 10**5, l1_fee_wei=7 * 10**12)
    assert base.cost_wei(200_000) == 200_000 * (10**6 + 10**5) + 7 * 10**12
    poly = GasModel.polygon(W, 50 * GWEI, priority_fee_wei=1 * GWEI)
    assert poly.bid() == (130 * GWEI, 30 * GWEI)           # priority raised to the minimum
    assert poly.cost_wei(100_000) == 100_000 * 80 * GWEI


def test_gas_is_converted_at_the_pools_price():
    pools = gap_pools(0)
    from engine.arb.graph import PoolGraph
    g = PoolGraph(pools)
    # deepest W/U pool: 2000 U per W (raw 2e12 / 1e21 = 2e-9 U-units per wei)
    assert convert(g, 10**18, W, U) == 2_000 * 10**6
    assert convert(g, 1, W, U) == 1                          # rounds up: a cost is never free


@pytest.mark.parametrize("gap_ppm", [1_000, 3_000, 5_500, 5_990])
def test_gap_smaller_than_fees_never_profitable(gap_ppm, free_gas):
    s = make_search(gap_pools(gap_ppm), free_gas, [balancer(W), aave(U)])
    assert all(o.net < 1 for o in s.on_event(["0xA"])) and not s.on_event(["0xA"])


def test_gas_can_eat_a_real_gap():
    pools = gap_pools(8_000, depth=1)
    cheap = make_search(pools, GasModel.arbitrum(W, 10**7)).on_event(["0xA"])
    assert cheap and cheap[0].net > 0
    gross = cheap[0].profit.gross
    # a gas price that costs more than the gross gap: nothing is reported
    price = gross // cheap[0].profit.gas_units + 10**9
    dear = make_search(pools, GasModel.arbitrum(W, price)).on_event(["0xA"])
    assert dear == []


def opportunity(gas, gap_ppm=20_000):
    s = make_search(gap_pools(gap_ppm), gas, [balancer(W)])
    opp = s.on_event(["0xA"])[0]
    return s.graph, opp


def exact_simulator(graph, delta=0, gas_used=None):
    def sim(action):
        out = route_amounts(graph, action.route, action.amount_in)[-1]
        return Simulation(True, out - action.amount_in - action.loan.fee + delta, gas_used)
    return sim


def decider(gas, sim, **cfg):
    return Decider(gas, DecisionConfig(**cfg), sim, clock=lambda: NOW)


def test_decision_approves_and_specifies_everything():
    gas = GasModel.polygon(W, 40 * GWEI)
    graph, opp = opportunity(gas)
    d = decider(gas, exact_simulator(graph, gas_used=190_000), min_profit=10**12).decide(
        opp, graph, StateInfo(100, 100, NOW - 0.1), event_id="ev1")
    assert d.approved and d.confidence >= 0.95, d.reason
    a = d.action
    assert a.route == opp.route and a.amount_in == opp.amount_in and a.loan == opp.profit.loan
    assert a.max_priority_fee_per_gas == 30 * GWEI and a.max_fee_per_gas == 110 * GWEI
    assert a.gas_limit == 190_000 * 120 // 100 and a.deadline == int(NOW) + 30
    worst = convert(graph, a.gas_limit * a.max_fee_per_gas, W, W)
    assert a.min_profit == worst + 10**12 and a.expected_profit <= opp.net
    rec = orjson.loads(orjson.dumps(d.record()))  # uint256 as strings: orjson accepts it
    assert rec["action"]["amount_in"] == str(a.amount_in) and rec["approved"] is True


@pytest.mark.parametrize("state,why", [
    (StateInfo(95, 100, NOW), "stale"), (StateInfo(100, 100, NOW - 60), "stale"),
    (StateInfo(101, 100, NOW), "stale")])
def test_decision_refuses_stale_state(state, why, free_gas):
    graph, opp = opportunity(free_gas)
    d = decider(free_gas, exact_simulator(graph)).decide(opp, graph, state)
    assert not d.approved and d.reason.startswith(why) and d.action is None


def test_decision_refuses_unsimulatable_routes(free_gas):
    graph, opp = opportunity(free_gas)
    fresh = StateInfo(1, 1, NOW)
    assert decider(free_gas, None).decide(opp, graph, fresh).reason.startswith("unsimulatable")

    def boom(action):
        raise ConnectionError("node down")
    d = decider(free_gas, boom).decide(opp, graph, fresh)
    assert not d.approved and "node down" in d.reason
    d = decider(free_gas, lambda a: Simulation(False, None, None, "InsufficientProfit")).decide(
        opp, graph, fresh)
    assert not d.approved and d.reason.startswith("simulation failed")


def test_a_route_whose_simulation_loses_is_never_approved():
    gas = GasModel.arbitrum(W, 10**8)
    graph, opp = opportunity(gas)
    fresh = StateInfo(1, 1, NOW)
    # the chain says the route yields less than its gas: refused, whatever we predicted
    d = decider(gas, exact_simulator(graph, delta=-opp.profit.gross)).decide(opp, graph, fresh)
    assert not d.approved and d.reason.startswith("simulation loses")
    # a simulation that confirms only 90 % of the prediction: confidence below 0.95
    d = decider(gas, exact_simulator(graph, delta=-opp.profit.gross // 10)).decide(opp, graph, fresh)
    assert not d.approved and d.confidence < 0.95 and "confidence" in d.reason
    # simulated gas far above the estimate turns the profit into a loss: refused
    huge = opp.profit.gross // gas.base_fee_wei + 1
    d = decider(gas, exact_simulator(graph, gas_used=huge)).decide(opp, graph, fresh)
    assert not d.approved and d.reason.startswith("simulation loses")


def test_estimate_gas_grows_with_hops_and_ticks():
    from engine.arb.graph import PoolGraph
    g = PoolGraph(gap_pools(0))
    r = g.route(g.cycles_through("0xA")[0])
    assert estimate_gas(r, LoanSource.AAVE) > estimate_gas(r, LoanSource.UNISWAP_V2)
    assert estimate_gas(r, LoanSource.AAVE, 3) > estimate_gas(r, LoanSource.AAVE)


def test_the_gas_rate_follows_every_change_and_rereads_only_the_changed_pool():
    """convert caches a pair's rate with each of its pools' depth: an event on one of them
    re-reads that pool alone, an event elsewhere none, a pool added or removed all of them;
    after every change the answer is the one a fresh graph gives."""
    import random
    import engine.arb.profit as profit
    from engine.arb.graph import PoolGraph
    from engine.arb.v3 import V3Pool, get_sqrt_ratio_at_tick
    D = "0x" + "0d" * 20
    rng = random.Random(4)

    def v2(addr):
        r = rng.randrange(10**11, 10**13)
        return V2Pool(addr, U, W, r, r * 10**9 // 2000 * rng.randrange(90, 110) // 100)

    def v3(addr):
        return V3Pool.from_liquidity_ranges(addr, U, W, 500, get_sqrt_ratio_at_tick(
            rng.randrange(195_000, 205_000)), [(180_000, 220_000, rng.randrange(10**15, 10**18))])
    g = PoolGraph([v2("0xA"), v2("0xB"), v3("0xC"), V2Pool("0xZ", D, U, 10**24, 10**12)])
    reads = []
    real = profit._depth

    def counting(pool, token):
        reads.append(pool.address)
        return real(pool, token)
    profit._depth = counting
    try:
        def check():
            want = convert(PoolGraph(list(g.pools.values())), 10**15, W, U)
            del reads[:]
            got = convert(g, 10**15, W, U)
            assert got == want
            return list(reads)
        assert sorted(check()) == ["0xA", "0xB", "0xC"]
        g.update(V2Pool("0xZ", D, U, 10**24, 2 * 10**12))          # another pair's pool
        assert check() == []
        for step in range(60):
            addr = rng.choice(["0xA", "0xB", "0xC"])
            g.update(v3(addr) if addr == "0xC" else v2(addr))
            assert check() == [addr]
        g.add(V2Pool("0xE", U, W, 9 * 10**13, 4000 * 10**18))        # a deeper one appears
        assert sorted(check()) == ["0xA", "0xB", "0xC", "0xE"]
        g.remove("0xE")
        assert sorted(check()) == ["0xA", "0xB", "0xC"]
    finally:
        profit._depth = real


def test_gas_is_converted_through_one_intermediate_token_when_no_pool_pairs_them():
    """No WETH/DAI pool: gas in WETH is valued in DAI through the deepest WETH pool's other
    token (USDC), and a later event on either pool is seen (the two-hop rate is per state)."""
    from engine.arb.graph import PoolGraph
    D = "0x" + "0d" * 20
    g = PoolGraph([V2Pool("0xA", U, W, 2_000_000 * 10**6, 1000 * 10**18),
                   V2Pool("0xZ", D, U, 10**24, 10**12)])           # 1 USDC = 1 DAI
    assert convert(g, 10**18, W, D) == 2_000 * 10**18
    g.update(V2Pool("0xZ", D, U, 2 * 10**24, 10**12))               # 1 USDC = 2 DAI
    assert convert(g, 10**18, W, D) == 4_000 * 10**18
    assert convert(g, 10**18, W, "0x" + "99" * 20) is None
