"""The agents price what an interrupting pool record opens (roles/pricing.py), in isolation: one
decision per record, an Action that fits a ring slot and that the executor's independent
re-quote accepts, and a refusal with its code and reason for everything else."""
from __future__ import annotations

from types import SimpleNamespace

import orjson

from engine.arb.graph import PoolGraph
from engine.arb.v2 import V2Pool
from engine.arb.wire import action_from_record
from roles.agents import Agent, Executor
from roles.pricing import loan_book

W, U, D = "0x" + "0e" * 20, "0x" + "05" * 20, "0x" + "0d" * 20
P1, P2, P3, P4 = ("0x" + f"{i:02x}" * 20 for i in (0xa1, 0xa2, 0xa3, 0xa4))
VAULT, AAVE = "0x" + "ba" * 20, "0x" + "aa" * 20
MANIFEST = {"chains": {"arbitrum": {
    "tokens": {"WETH": {"address": W}, "USDC": {"address": U}, "DAI": {"address": D}},
    "lenders": {"balancer": {"address": VAULT, "fee_bps": 0},
                "aave": {"address": AAVE, "premium_bps": 5}}}}}
SLOT_PAYLOAD = 2048 - 16      # [rings] outbox_slot_size, less the slot header


class Log:
    def __init__(self):
        self.lines = []

    def info(self, msg, **kw):
        self.lines.append((msg, kw))
    warning = error = info


def rt(name="spot", **options):
    from pathlib import Path
    return SimpleNamespace(name=name, log=Log(),
                           config=SimpleNamespace(options=options, chains=["arbitrum"]),
                           cfg=SimpleNamespace(manifest=MANIFEST, run_dir=Path("/nonexistent")))


def graph(gap=1.03):
    """WETH/USDC on two DEXes (a `gap` between them) and a WETH/USDC/DAI triangle."""
    return PoolGraph([V2Pool(P1, U, W, 2_000_000 * 10**6, 1_000 * 10**18),
                      V2Pool(P2, U, W, 2_000_000 * 10**6, int(1_000 * gap) * 10**18),
                      V2Pool(P3, D, U, 3_000_000 * 10**18, 3_000_000 * 10**6),
                      V2Pool(P4, D, W, 3_000_000 * 10**18, 1_500 * 10**18)], max_hops=3)


def record(pool=P1, block=10, interrupt=True, log_index=0, **kw):
    import time
    p = graph().pools.get(pool)
    if "state" not in kw and p is not None:      # the pool's state as graph() holds it
        kw["state"] = {"reserve0": str(p.reserve0), "reserve1": str(p.reserve1)}
    return {"type": "pool", "ring": "events.arbitrum", "chain": "arbitrum", "block": block,
            "block_hash": "0x" + "11" * 32, "tx": "0x" + "22" * 32, "log_index": log_index,
            "pool": pool, "kind": "v2", "event": "sync", "impact_bps": 120,
            "interrupt": interrupt, "reverted": False, "t_origin": time.monotonic_ns(),
            "t_written": 1, **kw}


def agent(g=None, **options):
    a = Agent(rt(**options))
    a.replicas.graphs["arbitrum"] = g if g is not None else graph()
    return a


def test_a_gap_becomes_one_approved_action_that_fits_a_slot():
    a = agent()
    (rec,) = a.handle([record(P2)])
    assert rec["kind"] == "opportunity" and rec["approved"], rec["reason"]
    assert rec["code"] == "ok" and rec["confidence"] == 1.0 and int(rec["net"]) > 0
    assert rec["event"] == f"arbitrum:{'0x' + '11' * 32}:{'0x' + '22' * 32}:0"
    action = action_from_record(rec["action"])
    assert action.route.token == W and action.expected_profit > 0
    assert action.loan.source.value in ("uniswap-v2", "balancer")
    # the role adds four timing stamps before publishing: the record must still fit
    stamps = {"t_sent": 2**62, "t_seen": 2**62, "t_handling": 2**62, "t_decided": 2**62}
    size = len(orjson.dumps({**rec, **stamps}))
    assert size <= SLOT_PAYLOAD
    assert a.book.approved == 1 and a.book.pending[0]["amounts"]        # full detail for LMDB
    assert a.rt.log.lines == []          # the switch only counts: logs come between switches
    a.background()
    assert a.rt.log.lines[0][0] == "opportunity approved"


def test_three_hop_action_fits_a_slot():
    # a gap on the DAI/WETH pool only: the triangle WETH -> USDC -> DAI -> WETH pays
    g = graph(gap=1.0)
    g.update(V2Pool(P4, D, W, 3_000_000 * 10**18, 1_560 * 10**18))
    (rec,) = agent(g, max_hops=3).handle([record(P4, state={"reserve0": str(3_000_000 * 10**18),
                                                             "reserve1": str(1_560 * 10**18)})])
    assert rec["approved"], rec["reason"]
    assert rec["hops"] == 3
    stamps = {"t_sent": 2**62, "t_seen": 2**62, "t_handling": 2**62, "t_decided": 2**62}
    size = len(orjson.dumps({**rec, **stamps}))
    print("three-hop decision record:", size, "bytes")
    assert size <= SLOT_PAYLOAD


def test_refusals_carry_their_code_and_reason():
    a = agent()
    quiet = record(P2, block=9, interrupt=False)          # applied, not priced
    recs = a.handle([quiet, record(P1, block=12), record("0x" + "99" * 20, block=12, log_index=1),
                     record(P1, block=3, log_index=2)])
    assert [r["code"] for r in recs][1:] == ["unknown-pool", "stale"]
    assert "newest seen 12" in recs[2]["reason"]
    info = a.info()["opportunities"]
    assert info["opportunities"] == 3 and info["refused_by_reason"]["stale"] == 1
    # no snapshot yet: refused, not crashed
    b = Agent(rt())
    (r,) = b.handle([record()])
    assert r["code"] == "no-replica" and not r["approved"]


def test_no_cycle_and_below_minimum():
    lone = PoolGraph([V2Pool(P1, U, W, 10**12, 10**21)])
    (r,) = agent(lone).handle([record(P1)])
    assert r["code"] == "no-cycle"
    (r,) = agent(graph(gap=1.03), min_profit=10**30).handle([record(P1)])
    assert r["code"] == "below-minimum" and "minimum" in r["reason"] and int(r["net"]) > 0
    (r,) = agent(graph(gap=1.0)).handle([record(P1)])     # no gap: nothing pays its fees
    assert r["code"] in ("no-profitable-route", "below-minimum")


def test_gas_comes_from_the_sampler_once_it_has_a_sample():
    a = agent(gas_gwei=0.5)
    assert a.pricers["arbitrum"].gas_gwei() == (0.5, "fallback")
    from roles.tasks import GasSampler
    a.gas_task = GasSampler(options={"rpc": "http://127.0.0.1:1"})
    a._gas_chain = "arbitrum"
    a.pricers["arbitrum"].gas_state = lambda: a.gas_task.state
    a.gas_task.state.update(ewma_gwei=2.0, last_gwei=3.0)
    assert a.pricers["arbitrum"].gas_gwei() == (3.0, "sampled")
    (rec,) = a.handle([record(P1)])
    assert a.book.pending[-1]["gas_gwei"] == 3.0


def test_a_non_pool_event_gets_a_refusal_not_a_placeholder():
    a = Agent(rt(impact_threshold_bps=50))
    out = a.handle([{"ring": "events.base", "id": "x", "chain": "base", "impact_bps": 75, "t_written": 5},
                    {"ring": "events.base", "id": "y", "chain": "base", "impact_bps": 10, "t_written": 6}])
    assert [d["code"] for d in out] == ["not-a-pool-record", "below-threshold"]
    assert all(d["kind"] == "opportunity" and not d["approved"] for d in out)
    a.background()
    assert len(a.rt.log.lines) == 1                  # only the one above the threshold


def test_log_lines_are_rate_limited():
    a = agent(log_per_s=3)
    a.handle([record(P1, block=10, log_index=i) for i in range(10)])
    a.background()
    assert len(a.rt.log.lines) == 3 and a.book.total == 10
    assert all(m.startswith("opportunity") for m, _ in a.rt.log.lines)


def test_the_executor_validates_on_its_own_replica():
    """The executor's re-quote (roles/executor.py: Executor.requote, the Desk's validator) on
    its own replica: the agent's Action agrees; one the replica's newer state no longer pays
    is refused with the re-quote's reason before any node is asked."""
    from engine.chain.desk import Desk
    from engine.chain.outcomes import Ledger
    a = agent()
    (rec,) = a.handle([record(P1)])
    ex = Executor(rt("exec"))
    ex.replicas.graphs["arbitrum"] = graph()
    ex.replicas.need["arbitrum"] = 0          # it reads events.arbitrum
    ex.desk = Desk({}, Ledger(None, "exec"), validator=ex.requote)
    rec = {**rec, "ring": "out.spot"}
    (x,) = ex.handle([rec, rec])                       # a redelivery is acted on once
    # agreed by the re-quote; then refused only because no chain is configured here
    assert x["state"] == "refused" and x["reason"] == "no executor contract configured on arbitrum"
    assert ex.requote(action_from_record(rec["action"])) is None
    tampered = {**rec, "event": "other", "action": {**rec["action"], "amount_in": "1"}}
    (y,) = ex.handle([tampered])
    assert y["state"] == "refused" and "amount_in" in y["reason"]
    moved = {**rec, "event": "moved"}
    p = ex.replicas.graphs["arbitrum"].pools[P2]
    ex.handle([record(P2, state={"reserve0": str(p.reserve0), "reserve1": str(p.reserve1 * 97 // 100)})])
    (z,) = ex.handle([moved])
    assert z["state"] == "refused" and z["reason"].startswith("re-quote: "), z


def test_lenders_come_from_the_manifest():
    book = loan_book(MANIFEST["chains"]["arbitrum"])
    assert {(o.source.value, o.lender, o.fee_ppm) for o in book.offers} == {
        ("balancer", VAULT, 0), ("aave", AAVE, 500)}
    assert len(book.offers) == 6 and book.v2_flash_swap
    assert loan_book(None).offers == []


def test_the_search_index_is_built_between_switches_and_used_by_the_next_interrupt():
    """search-index builds every pool's cycles and screen entries on the replica in the
    background; the interrupt then finds them built (nothing rebuilt in the switch), and a
    pool added later (a new topology) is indexed by the next run."""
    from roles.pricing import SearchIndex
    a = agent()
    (task,) = [t for t in a.tasks() if t.name == "search-index"]
    assert isinstance(task, SearchIndex)
    list(task.run(None))
    search = a.pricers["arbitrum"].search
    g = a.replicas.graphs["arbitrum"]
    assert set(search._ids) == set(g.pools)
    assert task.state["pools"]["arbitrum"] == 4 and task.state["cycles"]["arbitrum"] > 0
    built = {addr: search._ids[addr] for addr in g.pools}
    (rec,) = a.handle([record(P2)])
    assert rec["approved"], rec["reason"]
    assert a.pricers["arbitrum"].search is search          # the same search, bound once
    assert all(search._ids[addr] is built[addr] for addr in g.pools)
    g.add(V2Pool("0x" + "a5" * 20, U, W, 2_000_000 * 10**6, 1_010 * 10**18))
    list(task.run(None))
    assert len(search._ids) == 5 and search._ids[P1] is not built[P1]


def test_the_search_index_waits_for_a_replica():
    from engine.core.tasks import NotReady
    a = Agent(rt())
    (task,) = [t for t in a.tasks() if t.name == "search-index"]
    import pytest
    with pytest.raises(NotReady):
        list(task.run(None))
