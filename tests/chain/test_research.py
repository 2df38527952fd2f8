"""The roles' research tasks against the devnet: each reads real chain data and makes a
discovery; a node that is down fails the run, never raises out of it; mev-watch finds the
account that back-runs big swaps."""
from __future__ import annotations

import time

import pytest

from engine.core.tasks import Failed
from taskhelp import drive
from roles.research import PLAN, build
from roles.research.chain import BlockTiming, GasTrend, MevWatch




def test_gas_trend_and_block_times_on_each_chain(devnet):
    for chain in devnet.chains:
        url = devnet.rpc_url(chain)
        [g] = drive(GasTrend(chain, options={"rpc": url}))
        assert g["kind"] == "gas-trend" and int(g["next_base_fee_wei"]) > 0
        assert len(g["priority_p10_p50_p90_wei"]) == 3
        [b] = drive(BlockTiming(chain, options={"rpc": url, "blocks": 8}))
        assert b["blocks"] == 8 and b["max_state_age_s"] >= 1.0 and 0 <= b["gas_use_pct"] <= 100
        if chain == "arbitrum":     # anvil answers l1BlockNumber for an Arbitrum chain id
            assert isinstance(b["l1_block_number"], int) or "not available" in b["l1_block_number"]
        if chain == "base":
            assert "not available" in b["l1_base_fee_wei"]


def test_a_node_that_is_down_fails_the_run():
    for task in (GasTrend("base", options={"rpc": "http://127.0.0.1:9"}),
                 BlockTiming("base", options={"rpc": None}),
                 MevWatch("base", ["0x" + "ab" * 20], options={"rpc": "http://127.0.0.1:9"})):
        with pytest.raises(Failed) as e:
            drive(task)
        assert task.state["last_error"] and ("base" in str(e.value) or "127.0.0.1" in str(e.value))


def test_mev_watch_finds_who_backruns_big_swaps(devnet, arb):
    from engine.devnet import Traffic
    pools = [p for p in arb.m["pools"] if p["kind"] == "v2"][:2]
    t = Traffic(devnet.manifest, rate=50, seed=7, chains=["arbitrum"])
    t.chains = {"arbitrum": {**arb.m, "pools": pools}}
    sym = {v["address"]: k for k, v in arb.m["tokens"].items()}
    for _ in range(3):
        s = t.step(big=True)                               # the trader moves a pool >= 0.6 %
        pool = next(p for p in pools if p["address"] == s.pool)
        other = pool["token1"] if s.token_in == pool["token0"] else pool["token0"]
        arb.swap(pool, sym[other], arb.balance(other, arb.deployer) // 10**6)  # the deployer takes it back
    task = MevWatch("arbitrum", [p["address"] for p in arb.m["pools"]],
                    options={"rpc": devnet.rpc_url("arbitrum"), "blocks": 20})
    found = drive(task)
    assert found, task.state
    [bot] = found[0]["bots"]
    assert bot["address"] == arb.deployer.lower() and bot["backruns"] == 3
    assert task.score(s.pool) > 0 and task.state["big_swaps"] >= 3
    # excluding that address (our own executor, say) leaves nobody
    quiet = MevWatch("arbitrum", [p["address"] for p in arb.m["pools"]], [arb.deployer],
                     options={"rpc": devnet.rpc_url("arbitrum"), "blocks": 20})
    assert drive(quiet) == [] and quiet.state["bots"] == []


def test_every_planned_task_builds_and_names_itself():
    for family, plan in PLAN.items():
        tasks = build(family, chain="base", rpc="http://127.0.0.1:9", pools=["0x" + "ab" * 20],
                      run_dir="/nonexistent", tokens={})
        assert [t.name for t in tasks] == list(plan)
        assert [t.interval for t in tasks] == [iv for _, iv in plan.values()]


def test_a_spotter_in_a_real_engine_researches_and_the_executor_learns_the_block_time(
        devnet, arb, engine_factory, tmp_path):
    """`roles.agents:Spotter` on the devnet with its research intervals shortened: the gas
    trend becomes its gas source, its discoveries reach LMDB, and its measured block interval
    reaches the executor through the outbox."""
    import json
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    fast = {"gas-trend": {"interval": 0.5}, "sequencer-timing": {"interval": 0.5, "options": {"blocks": 6}},
            "mev-watch": {"interval": 1.0, "options": {"blocks": 50}},
            "liquidity-map": {"interval": 1.0}, "share-research": {"interval": 0.3},
            "checksum": {"interval": 0.2, "options": {"links_per_run": 500}}}
    e = engine_factory(roles={
        "monitor-arbitrum": {"kind": "roles.monitor:ChainMonitor", "chains": ["arbitrum"]},
        "arbitrum-spotter": {"kind": "roles.agents:Spotter", "chains": ["arbitrum"], "tasks": fast},
        "flash-loan-executor": {"kind": "roles.executor:Executor", "chains": ["arbitrum"],
                                "subscribe": False, "inbox": "interrupt",
                                "tasks": {"checksum": fast["checksum"]}}},
        rings={"slot_size": 1024}, chains={"manifest": str(manifest)}).start()
    e.wait_for(lambda: (e.roles()["arbitrum-spotter"].get("info") or {}).get("gas", {})
               .get("arbitrum", {}).get("source") == "trend", 30, "the gas from the trend")
    from engine.devnet import Traffic
    t = Traffic(devnet.manifest, rate=50, seed=9, chains=["arbitrum"])
    for i in range(6):          # blocks a few tenths of a second apart: a measurable interval
        t.step(big=i % 2 == 0)
        time.sleep(0.4)
    e.wait_for(lambda: "arbitrum" in ((e.roles()["flash-loan-executor"].get("info") or {})
                                      .get("block_time_measured") or {}), 30,
               "the executor's block time from the spotter's research")
    kinds = set()

    def discovered():
        r = e.cli("snapshot", str(e.store_dir), "export", "--db", "discoveries", "--format", "jsonl")
        kinds.update(json.loads(line)["value"].get("kind") for line in r.stdout.splitlines())
        return {"gas-trend", "block-times", "liquidity-map"} <= kinds
    try:
        e.wait_for(discovered, 30, "research discoveries in LMDB", poll=0.5)
    except AssertionError:
        raise AssertionError((kinds, e.roles()["arbitrum-spotter"].get("info"))) from None
    assert e.roles()["arbitrum-spotter"]["restarts"] == 0
    assert e.stop() == 0
