"""The learning loop on a real LMDB store (roles/learning.py): decisions and outcomes written as
the agents and the executor write them are joined, the coordinator's collective-learning task
trains and publishes a model to `models`, an agent's ModelGate loads it and filters with it;
a model that does not beat the fixed rule, or a corrupt record, leaves the fixed rule alone."""
from __future__ import annotations

import random

import orjson

from engine.arb.learn import decision_features
from engine.core.store import Store
from engine.core.store.keys import prefix_bytes, seq_bytes
from engine.core.tasks import TaskContext
from roles import learning
from taskhelp import ListLog


def drive(gen) -> int:
    steps = 0
    for _ in gen:
        steps += 1
    return steps


def write_history(store, n: int, seed: int = 4, structured: bool = True) -> None:
    """n approved decisions of one agent and their outcomes in one executor's ledger: routes
    through a contested pool (a rival takes them) fail, the others land (structured), or
    outcomes are a coin toss (not structured)."""
    rng = random.Random(seed)
    opps, outs = [], []
    for i in range(n):
        contested = rng.random() < 0.5
        f = decision_features(chain="arbitrum", amount_in=10**18, net=rng.randint(10**14, 10**15),
                              gross=2 * 10**15, gas_token=10**14, depth=10**21, hops=2,
                              contested=0.8 if contested else 0.0, age_s=rng.uniform(0, 0.2))
        ev = f"arbitrum:0xb:{i:064x}:0"
        opps.append({"kind": "opportunity", "role": "arbitrum-spotter", "event": ev,
                     "approved": True, "code": "ok", "chain": "arbitrum", "features": f,
                     "gas_cost_token": str(10**14), "gas_units": 200_000,
                     "route": [{"pool": "0xp1", "dex": "uniswap-v2"}, {"pool": "0xp2", "dex": "sushi"}],
                     "loan": {"source": "balancer"}})
        if rng.random() < 0.3:      # a refusal never sent: counted, not joined
            opps.append({"kind": "opportunity", "role": "arbitrum-spotter", "event": ev + "x",
                         "approved": False, "code": "no-profitable-route"})
        won = (not contested) if structured else rng.random() < 0.5
        key = f"arbitrum-spotter|{ev}"
        live = i % 2 == 0           # half mined (live), half paper
        outs.append({"key": key, "state": ("landed" if live else "paper") if won else "refused",
                     "t": 1000.0 + i, "chain": "arbitrum", "token": "0xweth",
                     **(({"realised": str(5 * 10**14), "gas_used": 260_000} if live else
                         {"simulated": str(5 * 10**14)}) if won else
                        {"reason": "simulation: reverted: min profit"})})
    store.append_many("opportunities", "arbitrum-spotter", opps).wait(10)
    store.append_many("outcomes", "flash-loan-executor", outs).wait(10)


def test_decisions_and_outcomes_train_a_model_the_agents_use(tmp_path):
    with Store.open(tmp_path / "s") as store:
        write_history(store, 200)
        store.append_many("outcomes", "flash-loan-executor",   # infrastructure: not about the trade
                          [{"key": "arbitrum-spotter|nope", "state": "refused",
                            "reason": "halted: no key"}]).wait(10)
        hub = learning.Outcomes()
        task = learning.CollectiveLearning(hub, store)
        found = []
        ctx = TaskContext("alphago-coordinator", discover=lambda t, r: found.append(r))
        assert drive(task.run(ctx)) > 10                   # it yields as it reads and trains
        assert len(hub.samples) == 200 and hub.agents["arbitrum-spotter"]["approved"] == 200
        with store.read() as r:
            recs = [v for _, v in r.records("models", learning.MODEL_KEY)]
        assert len(recs) == 1
        rec = recs[0]
        assert rec["version"] == 1 and rec["train_size"] == 140 and rec["held_back"] == 60
        assert rec["active"] and rec["beats_fixed"], rec
        assert rec["model"]["precision"] > rec["fixed"]["precision"] + 0.3
        assert rec["weights"]["contested"] < 0 and found[0]["kind"] == "model"
        assert "params" not in found[0]               # the discovery is the summary
        # nothing new: no second version
        drive(task.run(ctx))
        with store.read() as r:
            assert r.last_seq("models", learning.MODEL_KEY) == 1

        log = ListLog()
        gate = learning.ModelGate(log)
        assert gate.load(store) and gate.model is not None and not gate.load(store)
        ok = decision_features(chain="arbitrum", amount_in=10**18, net=5 * 10**14,
                               gross=2 * 10**15, gas_token=10**14, depth=10**21, hops=2,
                               contested=0.0, age_s=0.1)
        why, p, v, w = gate.judge(ok)
        assert why is None and p > 0.5 and v == 1 and w == 1.0
        why, p, v, w = gate.judge({**ok, "contested": 0.8})
        assert why.startswith("learned: model v1") and p < 0.5 and w == 1.0
        assert gate.info()["in_use"] and gate.info()["refused"] == 1
        # exploration: a share of what it refuses goes through, the same for the same key,
        # each weighing 1/explore when a later version is judged
        gate.explore = 0.25
        bad = {**ok, "contested": 0.8}
        let = [k for k in range(400) if gate.judge(bad, key=f"ev{k}").why is None]
        assert 60 < len(let) < 140 and gate.info()["explored"] == len(let)
        assert all(gate.judge(bad, key=f"ev{k}").weight == 4.0 for k in let)

        # team performance and route shapes from the same joined view
        team = learning.TeamPerformance(hub, store)
        drive(team.run(ctx))
        assert found[-1]["executors"]["flash-loan-executor"]["success_rate"] is not None
        assert found[-1]["agents"]["arbitrum-spotter"]["refused"]["no-profitable-route"] > 0
        strat = learning.StrategyEffectiveness(hub, store)
        drive(strat.run(ctx))
        assert found[-1]["best"][0]["shape"] == "arbitrum:2-hop:balancer:uniswap-v2/sushi"
        assert "route shapes" in strat.state["summary"]
        g = strat.state["gas"]["arbitrum:2-hop:balancer:uniswap-v2/sushi"]
        assert g["used_mean"] == 260_000 and g["estimated_mean"] == 200_000
        assert g["used_over_estimate"] == 1.3 and found[-1]["gas"]


def test_outcomes_are_held_back_by_when_the_executor_took_them(tmp_path):
    """The executor's first record of a sent Action ("accepted") has only monotonic stamps;
    its time is that of "signed".  A sent one must not sort before every refusal (it did: the
    held-back part was then mostly the executor's refusals)."""
    opp = {"kind": "opportunity", "role": "a", "approved": True, "chain": "arbitrum",
           "features": {"margin_bps": 1.0}, "gas_cost_token": "10", "route": [], "loan": {}}
    with Store.open(tmp_path / "s") as store:
        store.append_many("opportunities", "a", [{**opp, "event": e} for e in "xyz"]).wait(10)
        store.append_many("outcomes", "x", [
            {"key": "a|x", "state": "accepted", "t_accept": 5},
            {"key": "a|y", "state": "refused", "reason": "re-quote: lost", "t": 100.0},
            {"key": "a|x", "state": "signed", "t": 50.0},
            {"key": "a|z", "state": "accepted", "t_accept": 6},
            {"key": "a|z", "state": "signed", "t": 200.0},
            {"key": "a|x", "state": "landed", "t": 300.0, "realised": "99"},
            {"key": "a|z", "state": "reverted", "t": 301.0}]).wait(10)
        hub = learning.Outcomes()
        drive(hub.catch_up(store))
        assert [s["t"] for s in hub.ordered()] == [50.0, 100.0, 200.0]
        assert [s["state"] for s in hub.ordered()] == ["landed", "refused", "reverted"]


def test_a_model_that_does_not_beat_the_fixed_rule_is_published_but_not_used(tmp_path):
    with Store.open(tmp_path / "s") as store:
        write_history(store, 200, structured=False)
        task = learning.CollectiveLearning(learning.Outcomes(), store)
        drive(task.run(TaskContext("c")))
        with store.read() as r:
            rec = r.last("models", learning.MODEL_KEY)
        gate = learning.ModelGate()
        gate.load(store)
        if not rec["active"]:
            assert gate.model is None and "not in use" in gate.why
            assert gate.judge({"chain": "arbitrum"}) == (None, None, None, 1.0)
        # and a short history is never used, whatever it scores
        small = learning.CollectiveLearning(learning.Outcomes(), store, options={"min_train": 10**6})
        write_history(store, 20, seed=9)
        drive(small.run(TaskContext("c")))
        with store.read() as r:
            last = r.last("models", learning.MODEL_KEY)
        assert last["version"] == rec["version"] + 1 and not last["active"]
        assert last["reason"].startswith("trained on")


def test_a_corrupt_model_record_falls_back_to_the_fixed_rule_with_a_log_line(tmp_path):
    with Store.open(tmp_path / "s") as store:
        write_history(store, 200)
        drive(learning.CollectiveLearning(learning.Outcomes(), store).run(TaskContext("c")))
        log = ListLog()
        gate = learning.ModelGate(log)
        gate.load(store)
        assert gate.model is not None
        good = None
        with store.read() as r:
            good = r.last("models", learning.MODEL_KEY)
        for bad in ({**good, "params": {**good["params"], "weights": [1.0]}},
                    {**good, "params": {**good["params"], "bias": float("inf")}},
                    {**good, "params": "zzz"}, [1, 2], "not a model"):
            try:
                store.append("models", learning.MODEL_KEY, bad)
            except Exception:       # orjson refuses inf: write the bytes as a broken node would
                continue
            assert gate.load(store) and gate.model is None, bad
            assert "unusable" in gate.why and gate.judge({"chain": "base"}) == (None, None, None, 1.0)
        assert sum(1 for lvl, msg, _ in log.lines if lvl == "warning"
                   and msg.startswith("model record unusable")) >= 3
        # undecodable bytes in LMDB: the same
        key = prefix_bytes(learning.MODEL_KEY) + seq_bytes(10**6)
        with store._env.begin(write=True, db=store._dbs["models"]) as txn:
            txn.put(key, b"{not json")
        assert gate.load(store) and gate.model is None and "unusable" in gate.why
        # the coordinator reads past garbage in the databases it joins
        with store._env.begin(write=True, db=store._dbs["outcomes"]) as txn:
            txn.put(prefix_bytes("flash-loan-executor") + seq_bytes(10**6), b"\xff")
        # and past records with the wrong types: a key that is not a string, a time that is
        # not a number, features that are not numbers
        store.append_many("outcomes", "flash-loan-executor", [
            {"key": 5, "state": "landed"},
            {"key": "arbitrum-spotter|odd", "state": "landed", "t": "yesterday", "realised": "x"}]).wait(10)
        store.append("opportunities", "arbitrum-spotter", {
            "role": "arbitrum-spotter", "event": "odd", "approved": True,
            "features": {"margin_bps": "lots", "hops": None, "chain": 3}, "gas_cost_token": [1]})
        hub = learning.Outcomes()
        drive(hub.catch_up(store))
        assert hub.bad == 3 and len(hub.samples) == 201
        assert hub.samples["arbitrum-spotter|odd"]["features"]["margin_bps"] == 0.0
        assert hub.ordered()[0]["t"] == "yesterday"         # sorts first, does not raise
        orjson.dumps(learning.ModelGate().info())


def test_measured_gas_per_route_shape_reaches_the_agents_simulator(tmp_path):
    from engine.arb.wire import action_from_record, action_record
    from roles.research.contract import GAS_KEY, action_shape, gas_shape
    assert gas_shape(["v2", "v3"], "balancer") == "v2-v3:balancer"
    with Store.open(tmp_path / "s") as store:
        log = ListLog()
        gate = learning.ModelGate(log)
        assert not gate.load_gas(store) and gate.gas_for(None) is None
        store.append("models", GAS_KEY, {"version": 1, "shapes": {"v2-v2:uniswap-v2": {
            "units": 251_000, "n": 3, "static": 210_000}}})
        assert gate.load_gas(store) and gate.gas == {"v2-v2:uniswap-v2": 251_000}
        for bad in ({"shapes": {"v2-v2:uniswap-v2": {"units": 5}}}, {"shapes": [1]}, {"x": 1}, 7):
            store.append("models", GAS_KEY, bad)
            assert gate.load_gas(store) and gate.gas == {}, bad
        assert sum(1 for lvl, msg, _ in log.lines if msg.startswith("gas record unusable")) == 4
    # an Action's shape is its hop kinds and loan source, what the simulator asks the gate for
    from engine.arb.types import Action, Hop, Loan, LoanSource, PoolKind, Route
    t0, t1, p0, p1 = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "aa" * 20, "0x" + "bb" * 20
    a = Action(chain="base", route=Route((Hop(p0, PoolKind.V2, t0, t1, 30, "uni-v2"),
                                          Hop(p1, PoolKind.V3, t1, t0, 500, "uni-v3"))),
               amount_in=10**18, expected_out=10**18 + 10**15, loan=Loan(LoanSource.BALANCER,
               "0x" + "cc" * 20, t0, 10**18, 0), min_profit=1, expected_profit=10**15,
               gas_limit=228_000, max_fee_per_gas=2 * 10**9, max_priority_fee_per_gas=0,
               deadline=1_900_000_000, event_id="base:0x1:0x2:3")
    assert action_shape(action_from_record(action_record(a))) == "v2-v3:balancer"
    gate.gas = {"v2-v3:balancer": 300_000}
    assert gate.gas_for(a) == 300_000


def test_the_coordinator_announces_each_version_and_the_agents_load_it_at_once(
        engine_factory):
    """A real engine: the coordinator trains on the outcomes in its LMDB and announces the
    version on its outbox; the agent, whose own poll of `models` is an hour away, is
    interrupted by the announcement and loads the version between slices.  The executor no
    longer reads the coordinator's outbox (the announcement is not an Action)."""
    import signal as sig
    coord = {"kind": "roles.agents:Coordinator", "chains": ["arbitrum"], "subscribe": False,
             "tasks": {"collective-learning": {"enabled": False},
                       "team-performance": {"enabled": False},
                       "strategy-effectiveness": {"enabled": False},
                       "path-discovery": {"enabled": False}}}
    roles = {"alphago-coordinator": coord,
             "arbitrum-spotter": {"kind": "roles.agents:Agent", "chains": ["arbitrum"],
                                  "tasks": {"load-model": {"interval": 3600.0}}},
             "flash-loan-executor": {"kind": "roles.agents:Executor", "chains": ["arbitrum"],
                                     "subscribe": False, "inbox": "interrupt"}}
    e = engine_factory(roles=roles)
    e.store_dir.mkdir(parents=True)
    with Store.open(e.store_dir) as store:
        write_history(store, 200)
    e.start()

    def spot_model():
        return (e.roles()["arbitrum-spotter"].get("info") or {}).get("model")
    first = e.wait_for(spot_model, 20, "the spotter's first load-model run")
    assert first["version"] is None and first["announced"] == 0, first   # nothing trained yet
    # turn the training on (a reload restarts only the coordinator): it trains, commits v1
    # and announces it; the spotter loads it long before its hourly poll
    coord["tasks"]["collective-learning"] = {"interval": 3600.0, "options": {"min_train": 40}}
    e.write()
    e.signal(sig.SIGHUP)
    got = e.wait_for(lambda: (m := spot_model()) and m.get("version") == 1 and m, 30,
                     "the spotter using the announced v1")
    assert got["in_use"] and got["announced"] == 1, got
    rs = e.roles()
    assert rs["arbitrum-spotter"]["restarts"] == 0
    ex = rs["flash-loan-executor"]
    assert ex["events_lost"] == 0 and not ((ex.get("info") or {}).get("taken") or 0), ex
    assert e.stop() == 0
