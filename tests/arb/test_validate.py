"""The validator: an independent exact re-quote agrees with the search on the same state, and
refuses (with its reason) an action whose state moved, whose amounts or pools were tampered
with, or whose loan is not one the lender offers."""
from __future__ import annotations

from dataclasses import replace

from arbhelp import aave, balancer, make_search
from engine.arb.decision import Decider, DecisionConfig, Simulation, StateInfo
from engine.arb.graph import PoolGraph
from engine.arb.profit import GasModel, LoanBook
from engine.arb.types import Hop, Route
from engine.arb.v2 import V2Pool
from engine.arb.validate import requote
from engine.arb.wire import action_from_record, action_record

A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
W, U = "0x" + "0e" * 20, "0x" + "05" * 20     # real-length addresses: the wire checks them


def approved(offers=(), v2_flash=True):
    pools = [V2Pool(A, U, W, 2_000_000 * 10**6, 1_000 * 10**18),
             V2Pool(B, U, W, 2_000_000 * 10**6, 1_030 * 10**18)]
    gas = GasModel.arbitrum(W, 10**7)
    s = make_search(pools, gas, offers, max_hops=2, v2_flash=v2_flash)
    s.graph.base_tokens = (W, U)
    opp = s.on_event([A])[0]

    def sim(action):
        r = requote(s.graph, action, loans=s.loans)
        return Simulation(r.ok, r.profit)
    d = Decider(gas, DecisionConfig(), sim, clock=lambda: 100.0).decide(
        opp, s.graph, StateInfo(1, 1, 100.0), event_id="e")
    assert d.approved, d.reason
    return s, d.action


def copy_graph(g: PoolGraph) -> PoolGraph:
    return PoolGraph(list(g.pools.values()), max_hops=g.max_hops, base_tokens=g.base_tokens)


def test_an_independent_replica_agrees_to_the_wei():
    s, action = approved()
    other = copy_graph(s.graph)               # another process's replica of the same state
    r = requote(other, action_from_record(action_record(action)), loans=s.loans)
    assert r.ok and r.confidence == 1.0
    assert r.profit == action.expected_out - action.amount_in - action.loan.fee


def test_state_moved_against_the_action_is_refused():
    s, action = approved()
    g = copy_graph(s.graph)
    p = g.pools[B]
    g.update(p.with_reserves(p.reserve0, p.reserve1 * 1000 // 1003))   # the gap mostly closed
    r = requote(g, action, loans=s.loans)
    assert not r.ok and ("min_profit" in r.reason or "predicted" in r.reason)
    assert r.profit is not None and r.confidence < 0.95


def test_tampered_actions_are_refused_with_the_field_named():
    s, action = approved([balancer(W), aave(W)], v2_flash=False)
    g = s.graph
    assert requote(g, action, loans=s.loans).ok
    more = replace(action, amount_in=action.amount_in * 2)
    assert "loan amount" in requote(g, more, loans=s.loans).reason
    ghost = "0x" + "cc" * 20
    hops = (replace(action.route.hops[0], pool=ghost),) + action.route.hops[1:]
    r = requote(g, replace(action, route=Route(hops)), loans=s.loans)
    assert not r.ok and "unknown pool" in r.reason and r.profit is None
    fee = (replace(action.route.hops[0], fee=5),) + action.route.hops[1:]
    assert "fee 5" in requote(g, replace(action, route=Route(fee)), loans=s.loans).reason
    cheap = replace(action, loan=replace(action.loan, fee=action.loan.fee + 1))
    assert "loan fee" in requote(g, cheap, loans=s.loans).reason
    stranger = replace(action, loan=replace(action.loan, lender="0x" + "dd" * 20))
    assert "does not lend" in requote(g, stranger, loans=LoanBook([balancer(W)], False)).reason
    greedy = replace(action, expected_out=action.expected_out * 2)   # a prediction too good
    r = requote(g, greedy, loans=s.loans)
    assert not r.ok and r.confidence < 0.95 and "of the predicted" in r.reason


def test_wrong_hop_tokens_are_refused():
    s, action = approved()
    h = action.route.hops[0]
    swapped = (Hop(h.pool, h.kind, h.token_in, "0x" + "ee" * 20, h.fee),)
    assert "tokens" in requote(s.graph, replace(action, route=Route(swapped))).reason
