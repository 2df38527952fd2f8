"""The learning loop end to end on the devnet (issue 13, item 3), with a rival searcher taking a
share of the opportunities: the spotter's decisions (with their features) and the executor's
outcomes (live mode with anvil's dev key: real transactions that land or revert, or are refused
by the eth_call before any is sent) are joined by the coordinator, which trains the send filter's model and publishes it to `models`; the spotter
loads it, and once it is in use an approved route the model expects to fail is refused
("learned").  The held-back outcomes are the latest 30 % by time, never trained on.

The fixed rule here is the re-quote's confidence alone (`contest_weight = 0`): mev-watch's
contested score is a feature the model may learn from, not a rule.

The race: in automine mode our pipeline beat the rival on 123 of 124 big swaps (so nothing to
learn); with 1 s interval mining both back-runs wait for the same block, and the rival tips
2 gwei where our Arbitrum bid tips nothing, so on its pools it is first (engine/devnet/rival.py)."""
from __future__ import annotations

import json
import os
import time

import pytest

from engine.core.store import ReadOnlyStore
from enginehelp import LIGHT
from ingresshelp import own_devnet

devnet = pytest.fixture(scope="module")(own_devnet)   # swaps stay out of the session devnet
CHAIN = "arbitrum"
SWAPS = int(os.environ.get("SYNDICATE_LEARN_SWAPS", "70"))      # big swaps
# anvil's well-known dev key of account 1 (the devnet executor's owner): test-only
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def models_of(e, prefix: str) -> list[dict]:
    if not (e.store_dir / "data.mdb").exists():
        return []
    s = ReadOnlyStore.open(e.store_dir)
    try:
        with s.read() as r:
            return [v for _, v in r.records("models", prefix)]
    finally:
        s.close()


def models(e) -> list[dict]:
    return models_of(e, "send-filter")


def info(e, role: str) -> dict:
    return (e.roles().get(role) or {}).get("info") or {}


def test_the_learned_model_beats_the_fixed_rule_on_held_back_devnet_outcomes(
        devnet, engine_factory, tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    fast = {"mev-watch": {"interval": 2.0, "options": {"blocks": 400}},
            "gas-trend": {"interval": 5.0}, "sequencer-timing": {"interval": 30.0},
            "liquidity-map": {"interval": 60.0}, "load-model": {"interval": 1.0},
            **LIGHT["tasks"]}
    coord = {"collective-learning": {"interval": 3.0, "options": {"min_train": 40}},
             "team-performance": {"interval": 5.0}, "strategy-effectiveness": {"interval": 5.0},
             "path-discovery": {"interval": 5.0}, **LIGHT["tasks"]}
    e = engine_factory(roles={
        f"monitor-{CHAIN}": {"kind": "roles.monitor:ChainMonitor", "chains": [CHAIN]},
        "arbitrum-spotter": {"kind": "roles.agents:Spotter", "chains": [CHAIN], "tasks": fast,
                             # freshness as the unit tests' (a loaded machine delivers late);
                             # the fixed rule without the contested score: a feature only
                             "options": {"max_age_s": 60.0, "contest_weight": 0.0,
                                         # a quarter of the learned refusals still sent: later
                                         # versions are judged on them (weight 4)
                                         "explore": 0.25}},
        "flash-loan-executor": {"kind": "roles.executor:Executor", "chains": [CHAIN],
                                "subscribe": "quiet", "inbox": "interrupt",
                                "options": {"stale_factor": 400.0, "receipt_timeout": 20.0},
                                "tasks": {"path-discovery": {"interval": 5.0},
                                          "contract-optimisation": {"interval": 5.0},
                                          **LIGHT["tasks"]}},
        "alphago-coordinator": {"kind": "roles.agents:Coordinator", "chains": [CHAIN],
                                "subscribe": False, "inbox": "poll", "tasks": coord}},
        engine={"mode": "live"},
        chains={"manifest": str(manifest), CHAIN: {"drift_interval": 0.0}})
    monkeypatch.setenv("SYNDICATE_EXECUTOR_KEY", OWNER_KEY)
    w3 = devnet.w3(CHAIN)
    w3.provider.make_request("evm_setIntervalMining", [1])
    try:
        run(e, devnet, tmp_path)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


def run(e, devnet, tmp_path):
    from engine.devnet import Traffic
    from engine.devnet.rival import Rival
    e.start()
    e.wait_for(lambda: ((info(e, f"monitor-{CHAIN}").get("chains") or {}).get(CHAIN) or {})
               .get("follower", {}).get("active"), 60, "monitor following")
    rival = Rival(devnet.manifest, chains=[CHAIN], share=0.5, react=1.0, seed=3,
                  priority_wei=2 * 10**9)
    t = Traffic(devnet.manifest, rate=1000, seed=13, chains=[CHAIN], rival=rival)
    t0 = time.monotonic()
    for i in range(SWAPS):
        t.step(big=True)
    traffic_s = time.monotonic() - t0
    # every decision through the executor: the joined outcomes settle
    e.wait_for(lambda: len(models(e)) and models(e)[-1]["train_size"] + models(e)[-1]["held_back"]
               >= 0.9 * (info(e, "arbitrum-spotter").get("opportunities") or {}).get("approved", 1),
               120, "the coordinator's model over the run's outcomes", poll=1.0)
    ms = models(e)
    last = ms[-1]
    ops = info(e, "arbitrum-spotter").get("opportunities") or {}
    report = {"swaps": SWAPS, "traffic_s": round(traffic_s, 1), "load": os.getloadavg(),
              "decisions": ops, "rival": rival.statistics(),
              "versions": len(ms), "last": {k: last.get(k) for k in (
                  "version", "train_size", "held_back", "explored", "fixed", "model",
                  "beats_fixed", "active", "reason", "weights")},
              # every version trained on >= 40: (version, train, fixed precision, model
              # precision, fixed profit/tx, model profit/tx, beats)
              "eligible": [(x["version"], x["train_size"], x["fixed"]["precision"],
                            x["model"]["precision"], x["fixed"]["profit_per_tx"],
                            x["model"]["profit_per_tx"], x["beats_fixed"])
                           for x in ms if x["train_size"] >= 40]}
    print(json.dumps(report, indent=1, default=str))
    if os.environ.get("SYNDICATE_LEARN_REPORT"):     # the joined outcomes, for a look offline
        from roles.learning import Outcomes
        hub = Outcomes()
        s = ReadOnlyStore.open(e.store_dir)
        try:
            for _ in hub.catch_up(s):
                pass
        finally:
            s.close()
        mine = rival.pools(CHAIN)
        rows = [{**x, "key": k, "rival_pool": any(p in mine for p in x["pools"])}
                for k, x in hub.samples.items()]
        with open(os.environ["SYNDICATE_LEARN_REPORT"], "w") as f:
            json.dump({"report": report, "rival_pools": sorted(mine), "samples": rows,
                       "ledger": hub.ledger}, f, default=str)
    assert last["train_size"] >= 40, report
    # Each version is trained on the older 70 % of what was joined when it ran and judged on
    # the rest.  On these runs the gain is small (DEVELOPING.md: figures) and the last version
    # does not always beat the fixed rule, so: some version did, and the spotter used it.
    used = [m for m in ms if m["active"]]
    assert used, report
    assert all(m["beats_fixed"] and m["train_size"] >= 40 and
               m["model"]["precision"] > m["fixed"]["precision"] for m in used), used
    if not (info(e, "arbitrum-spotter").get("model") or {}).get("judged"):
        e.wait_for(lambda: (info(e, "arbitrum-spotter").get("model") or {}).get("in_use"), 30,
                   "the spotter using the model")
        for _ in range(20):
            t.step(big=True)
        e.wait_for(lambda: (info(e, "arbitrum-spotter").get("model") or {}).get("judged"),
                   60, "decisions judged by the model")
    m = info(e, "arbitrum-spotter")["model"]
    refused = info(e, "arbitrum-spotter")["opportunities"].get("refused_by_reason") or {}
    print(json.dumps({"model_in_the_filter": m, "refused": refused,
                      "active_versions": [(x["version"], x["train_size"], x["fixed"]["precision"],
                                           x["model"]["precision"]) for x in used]}, default=str))
    assert m["judged"] > 0 and (m["refused"] == 0 or refused.get("learned") == m["refused"]), m
    assert m["explored"] <= m["judged"] and m["explore"] == 0.25, m
    # the coordinator's tasks and their findings: `status --tasks`, and the discoveries in LMDB
    tasks = json.loads(e.cli("status", "-c", str(e.path), "--tasks", "--json").stdout)
    co = tasks["alphago-coordinator"]["tasks"]
    assert co["collective-learning"]["summary"].startswith("model v"), co
    for name in ("team-performance", "strategy-effectiveness", "path-discovery"):
        assert co[name]["completed"] >= 1 and co[name].get("summary"), (name, co[name])
    assert "untried" in co["path-discovery"]["summary"]
    guide = info(e, "alphago-coordinator").get("guide") or {}    # the guide's success metrics
    assert guide.get("task_completion_rate") is not None and guide.get("decisions_timed"), guide
    print(json.dumps({"guide": guide}))
    # the executor's research: its replicas' cycles, and gas per route shape measured on the
    # chain, which the spotter loaded for its simulator
    ex = tasks["flash-loan-executor"]["tasks"]
    assert ex["path-discovery"]["completed"] >= 1, ex
    assert ex["contract-optimisation"]["completed"] >= 1, ex["contract-optimisation"]
    gas = models_of(e, "gas-by-shape")
    assert gas and gas[-1]["shapes"], gas
    print(json.dumps({"gas_by_shape": gas[-1]["shapes"]}))
    assert all(v["units"] > 21_000 for v in gas[-1]["shapes"].values())
    e.wait_for(lambda: (info(e, "arbitrum-spotter").get("model") or {}).get("gas_shapes"), 30,
               "the spotter's measured gas per shape")
    text = e.cli("status", "-c", str(e.path), "--tasks").stdout
    assert "FOUND" in text and "route shapes" in text, text
    found = set()
    r = e.cli("snapshot", str(e.store_dir), "export", "--db", "discoveries", "--format", "jsonl")
    for line in r.stdout.splitlines():
        found.add(json.loads(line)["value"].get("kind"))
    assert {"model", "team-performance", "strategy-effectiveness", "paths"} <= found, found
    assert e.roles()["alphago-coordinator"]["restarts"] == 0
    assert e.roles()["arbitrum-spotter"]["restarts"] == 0
    assert e.stop() == 0
