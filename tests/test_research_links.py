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
