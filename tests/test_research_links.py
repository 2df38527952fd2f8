"""What the research finds changes decisions (roles/agents.py Spotter, roles/pricing.py): the
gas-trend figures become the gas price, a contested pool scores its routes down to a refusal,
and block timing travels to the executor's staleness limit."""
from __future__ import annotations

from types import SimpleNamespace

from roles.agents import Spotter
from roles.research.chain import GasTrend, MevWatch
from test_pricing import P1, P2, graph, record, rt


def spotter(**options):
    r = rt(**options)
    r.cfg.networks = {"arbitrum": {"rpc": ["http://127.0.0.1:9"], "pools": [P1, P2]}}
    s = Spotter(r)
    s.tasks()                                  # builds its research plan
    s.replicas.graphs["arbitrum"] = graph()
    return s


def test_the_spotter_runs_its_plan():
    s = spotter()
    assert set(s.research) == {"gas-trend", "sequencer-timing", "mev-watch", "liquidity-map"}
    assert s.research["gas-trend"].interval == 60.0 and s.research["mev-watch"].interval == 120.0
    assert s.research["mev-watch"].pools == sorted({P1, P2})


def test_gas_trend_is_the_gas_price_once_it_has_run():
    s = spotter(gas_gwei=0.5)
    p = s.pricers["arbitrum"]
    assert p.gas_gwei() == (0.5, "fallback")
    t = s.research["gas-trend"]
    assert isinstance(t, GasTrend)
    t.state.update(runs=1, next_base_fee_wei=2_500_000_000, bid_priority_wei=10**8)
    assert p.gas_gwei() == (2.5, "trend")
    (rec,) = s.handle([record(P2)])
    assert s.book.pending[-1]["gas_source"] == "trend"


def test_a_contested_pool_scores_its_routes_down():
    s = spotter()
    (free,) = s.handle([record(P2)])
    assert free["approved"] and free["contested"] == 0.0, free["reason"]
    mev = s.research["mev-watch"]
    assert isinstance(mev, MevWatch)
    mev.state["contested"] = {P2: 0.6}          # 60 % of P2's big swaps were back-run
    (rec,) = s.handle([record(P2, log_index=1)])
    assert not rec["approved"] and rec["code"] == "contested", rec
    assert "60%" in rec["reason"] and rec["contested"] == 0.6 and "action" not in rec
    # a weight of 0 ignores competition
    s.pricers["arbitrum"].o = {**s.pricers["arbitrum"].o, "contest_weight": 0.0}
    (again,) = s.handle([record(P2, log_index=2)])
    assert again["approved"]


def test_block_timing_reaches_the_executor_once_per_run():
    s = spotter()
    sent = []
    s.rt.outbox = SimpleNamespace(publish_many=lambda recs, notify=True: sent.extend(recs))
    timing = s.research["sequencer-timing"]
    assert s.share_research() == []            # nothing measured yet
    timing.state.update(runs=1, interval_s=0.25, p95_interval_s=1, max_state_age_s=3.0)
    [rec] = s.share_research()
    assert rec["kind"] == "research" and rec["chain"] == "arbitrum" and rec["interval_s"] == 0.25
    assert s.share_research() == [] and len(sent) == 1     # once per run

    from engine.chain.desk import ChainSetup
    from roles.executor import Executor
    ex = Executor.__new__(Executor)                 # just the part that takes the record
    ex.desk = SimpleNamespace(setups={"arbitrum": ChainSetup("arbitrum", "http://x", 42161, "0x" + "ee" * 20, 2.0)})
    ex.log = SimpleNamespace(info=lambda *a, **k: None)
    ex.measured_block_time = {}
    ex.research_from({**rec, "ring": "out.spot"})
    assert ex.desk.setups["arbitrum"].block_time == 0.25 and ex.measured_block_time == {"arbitrum": 0.25}
    for bad in (0, -1, 1e9, "fast", True):
        ex.research_from({**rec, "interval_s": bad})
    assert ex.desk.setups["arbitrum"].block_time == 0.25


def test_the_gas_trend_reaches_the_executors_fees():
    """The agent shares its gas-trend bid; the executor prices its priority fee with it (never
    under Polygon's floor, none on Arbitrum) over the live base fee; absurd figures are ignored."""
    from engine.chain.chaindesk import GWEI, ChainSetup, bump, price_fees
    from roles.executor import Executor
    s = spotter()
    sent = []
    s.rt.outbox = SimpleNamespace(publish_many=lambda recs, notify=True: sent.extend(recs))
    s.research["gas-trend"].state.update(runs=1, next_base_fee_wei=2 * GWEI, bid_priority_wei=3 * GWEI)
    [rec] = s.share_research()
    assert rec["task"] == "gas-trend" and rec["bid_priority_wei"] == str(3 * GWEI)
    ex = Executor.__new__(Executor)
    ex.desk = SimpleNamespace(setups={"base": ChainSetup("base", "http://x", 8453, "0x" + "ee" * 20, 2.0)})
    ex.log = SimpleNamespace(info=lambda *a, **k: None)
    ex.measured_block_time = {}
    ex.research_from({**rec, "chain": "base", "ring": "out.spot"})
    setup = ex.desk.setups["base"]
    assert setup.bid_priority == 3 * GWEI
    for bad in ("lots", None, -1, 10**20):
        ex.research_from({**rec, "chain": "base", "bid_priority_wei": bad})
    assert setup.bid_priority == 3 * GWEI
    assert price_fees("base", 10 * GWEI, setup.bid_priority, 1) == (23 * GWEI, 3 * GWEI)
    assert price_fees("base", 10 * GWEI, None, 5) == (20 * GWEI + 5, 5)        # the Action's bid
    assert price_fees("polygon", GWEI, GWEI, 0) == (27 * GWEI, 25 * GWEI)      # the floor
    assert price_fees("arbitrum", GWEI, 3 * GWEI, 7) == (2 * GWEI, 0)
    assert bump(100) == 113 and bump(0) == 1 and bump(10**9) >= 11 * 10**8


def test_a_route_that_reverted_on_a_fork_is_refused_until_its_hold_ends():
    from engine.arb.wire import action_from_record
    from roles.research.fork import route_key
    s = spotter(fork_hold_s=120.0)
    (ok,) = s.handle([record(P2)])
    assert ok["approved"], ok["reason"]
    a = action_from_record(ok["action"])
    now = [1000.0]
    gate = s.model_gate
    gate.clock = lambda: now[0]
    assert gate.fork_hold_s == 120.0
    # what load_fork takes from a models/fork-tests record (roles/research/fork.py)
    gate.failing = {route_key(a): {"verdict": "reverted: InsufficientProfit(1, 2)", "block": 9,
                                   "at": 990.0}}
    (rec,) = s.handle([record(P2, log_index=1)])
    assert not rec["approved"] and rec["code"] == "fork-test" and "action" not in rec, rec
    assert rec["reason"].startswith("fork-test: this route reverted on a fork at block 9 "
                                    "(reverted: InsufficientProfit(1, 2))"), rec["reason"]
    assert s.book.info()["refused_by_reason"]["fork-test"] == 1
    now[0] = 1111.0                           # the hold is over: priced as before
    (again,) = s.handle([record(P2, log_index=2)])
    assert again["approved"], again["reason"]
