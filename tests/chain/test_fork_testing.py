"""The executor's fork-testing (roles/research/fork.py) on the devnet: an approved decision from a
real big swap sent on an anvil fork at its block lands with exactly the predicted profit; a
tampered one reverts with its reason; the agents' loader takes the measured gas; the fork anvil
is gone after every run, however the run ends."""
from __future__ import annotations

import copy
import time

import pytest

import taskhelp
import tradehelp
from engine.arb.wire import action_from_record
from engine.core.store import Store
from engine.core.tasks import Failed
from roles.modelgate import ModelGate
from roles.research.contract import action_shape
from roles.research.fork import FORK_KEY, ForkTest, route_key, summary, verdict


def drive(task, gen=None, timeout: float = 60.0, stop_when=None):
    """Run `task` once, waiting as it asks; (discoveries, pids of every fork anvil it ran)."""
    pids = set()

    def step(t, _gen):
        if t.fork is None:
            return False
        pids.add(t.fork.proc.pid)
        return bool(stop_when and stop_when(t))
    found = taskhelp.drive(task, gen, role="flash-loan-executor", timeout=timeout, on_step=step)
    return found, pids



def gone(pid: int) -> bool:
    """No such process, or only its zombie (reparented, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def setup_of(c) -> dict:
    owner = c.m["accounts"]["executor_owner"]
    return {c.name: (c.m["rpc_url"], c.m["contracts"]["executor"], owner, owner)}


def test_the_verdict_is_exact_only_to_the_wei():
    assert verdict(1, 10**15, 10**15) == "exact"
    assert verdict(1, 10**15 - 1, 10**15) == "differs"
    assert verdict(1, 10**15 + 1, 10**15) == "differs"
    assert verdict(0, 0, 10**15, "InsufficientProfit(0, 5)") == "reverted: InsufficientProfit(0, 5)"
    assert verdict(0, 0, 0) == "reverted: no reason given"
    assert summary([]).startswith("nothing to test")
    s = summary([{"verdict": "exact"}, {"verdict": "reverted: Expired()"}, {"verdict": "exact"}])
    assert s.startswith("3 routes on a fork: 2 exact, 1 reverted") and "Expired()" in s


def test_nothing_to_test_completes_and_a_node_that_is_down_fails(tmp_path):
    with Store.open(tmp_path / "s") as store:
        t = ForkTest(store, lambda: {"arbitrum": ("http://127.0.0.1:9", "0x" + "ee" * 20,
                                                  "0x" + "aa" * 20, "0x" + "aa" * 20)})
        assert drive(t)[0] == [] and t.state["summary"].startswith("nothing to test")
        with pytest.raises(Failed, match="no chain"):
            drive(ForkTest(store, lambda: {}))
        rec = {"kind": "opportunity", "role": "arbitrum-spotter", "event": "e1", "block": 7,
               "approved": True, "action": _action_record()}
        store.append("opportunities", "arbitrum-spotter", rec)
        with pytest.raises(Failed, match="127.0.0.1:9"):
            drive(t)
        assert t.state["tested"] == [] and t.fork is None     # tried again next run


def test_a_real_decision_lands_exactly_on_the_fork_and_a_tampered_one_reverts(arb, tmp_path):
    trigger = tradehelp.gap(arb, weth=300)
    good = tradehelp.approved(arb, trigger)
    block = arb.w3.eth.block_number
    good["block"] = block
    bad = copy.deepcopy(good)
    bad["event"] += ":tampered"
    bad["action"]["min_profit"] = str(tradehelp.predicted(good) + 1)
    starved = copy.deepcopy(good)
    starved["event"] += ":starved"
    starved["action"]["gas_limit"] = 200_000
    owner = arb.m["accounts"]["executor_owner"]
    token = good["action"]["route"][0]["token_in"]
    before = arb.balance(token, owner)
    with Store.open(tmp_path / "s") as store:
        store.append("opportunities", "arbitrum-spotter", good)
        store.append("opportunities", "arbitrum-spotter", bad)
        store.append("opportunities", "arbitrum-spotter", starved)
        task = ForkTest(store, lambda: setup_of(arb))
        found, pids = drive(task)
        assert len(pids) == 1 and all(gone(p) for p in pids), pids    # one fork, stopped
        [rec] = found
        by = {r["key"].split("|")[1]: r for r in rec["routes"]}
        ok, no, oog = by[good["event"]], by[bad["event"]], by[starved["event"]]
        assert ok["verdict"] == "exact", ok
        assert int(ok["realised"]) == tradehelp.predicted(good) > 0 and ok["block"] == block
        assert ok["mined"] == block + 1 and ok["gas_used"] > 21_000
        assert ok["pools"] == [h["pool"].lower() for h in good["action"]["route"]]
        assert no["verdict"].startswith("reverted: InsufficientProfit("), no
        assert int(no["realised"]) == 0 and no["mined"] == block + 1   # anvil_reset undid ok
        assert oog["verdict"].endswith("of its limit 200000: out of gas") and oog["out_of_gas"]
        assert not no["out_of_gas"] and not ok["out_of_gas"]
        shape = action_shape(action_from_record(good["action"]))
        # the starved run is a lower bound (under what the landed one used): n counts it
        assert rec["shapes"] == {shape: {"gas_used": ok["gas_used"], "n": 2}}
        assert "3 routes on a fork: 1 exact, 2 reverted" in task.state["summary"]
        print({"fork_ready_s": task.state["fork_ready_s"], "gas_used": ok["gas_used"],
               "reverted": no["verdict"], "starved": oog["verdict"]})
        assert arb.balance(token, owner) == before          # the chain itself never saw them
        # a second run has nothing new to test
        assert drive(task)[0] == [] and task.state["summary"].startswith("nothing to test")
        # the agents' loader: the fork's gas used, the larger of the two measurements
        gate = ModelGate()
        assert gate.load_fork(store) and gate.fork_gas == {shape: ok["gas_used"]}
        a = action_from_record(good["action"])
        assert gate.gas_for(a) == ok["gas_used"]
        gate.gas = {shape: ok["gas_used"] - 1000}
        assert gate.gas_for(a) == ok["gas_used"]
        gate.gas = {shape: ok["gas_used"] + 1000}
        assert gate.gas_for(a) == ok["gas_used"] + 1000
        assert not gate.load_fork(store)                     # nothing newer
        # the tampered test came after the exact one: the route is failing (the starved one,
        # out of gas, says nothing about it), and the agents refuse it for fork_hold_s
        assert list(rec["failing"]) == [route_key(a)], rec["failing"]
        assert rec["failing"][route_key(a)]["verdict"].startswith("reverted: InsufficientProfit(")
        now = [time.time()]
        gate = ModelGate(fork_hold_s=600, clock=lambda: now[0])
        assert gate.load_fork(store) and gate.info()["fork_failing"] == 1
        why = gate.fork_refusal(a)
        assert why.startswith(f"fork-test: this route reverted on a fork at block {block} "
                              "(reverted: InsufficientProfit("), why
        hops = copy.deepcopy(good["action"]["route"])
        hops[0]["pool"] = "0x" + "ab" * 20
        other = action_from_record({**good["action"], "route": hops})
        assert gate.fork_refusal(other) is None               # another route: not refused
        now[0] += 601
        assert gate.fork_refusal(a) is None                   # held for fork_hold_s only
        assert gate.info()["fork_refused"] == 1
        with store.read() as r:
            assert len(list(r.records("models", FORK_KEY))) == 1


def test_the_fork_is_stopped_when_the_run_is_closed_or_cannot_start(arb, tmp_path):
    rec = {"kind": "opportunity", "role": "arbitrum-spotter", "event": "late",
           "block": arb.w3.eth.block_number + 10_000, "approved": True,
           "action": _action_record()}
    with Store.open(tmp_path / "s") as store:
        store.append("opportunities", "arbitrum-spotter", rec)
        task = ForkTest(store, lambda: setup_of(arb))
        with pytest.raises(Failed, match="did not start|did not answer") as e:
            drive(task)
        print(e.value)
        rec["event"], rec["block"] = "now", arb.w3.eth.block_number
        store.append("opportunities", "arbitrum-spotter", rec)
        # the generator closed while the fork starts (a role stopping): the fork goes with it
        _, pids = drive(task, stop_when=lambda t: True)
        assert pids and all(gone(p) for p in pids) and task.fork is None


KILLED_MID_RUN = """
import sys, time
from engine.core.store import Store
from roles.research.fork import ForkTest
store = Store.open({store!r})
task = ForkTest(store, lambda: {setup!r})
gen = task.run(__import__("engine.core.tasks", fromlist=["x"]).TaskContext("x"))
while task.fork is None:
    next(gen)
print(task.fork.proc.pid, flush=True)
time.sleep(60)
"""


def test_a_role_killed_mid_run_takes_its_fork_with_it(arb, tmp_path):
    import signal
    import subprocess
    import sys
    rec = {"kind": "opportunity", "role": "arbitrum-spotter", "event": "now",
           "block": arb.w3.eth.block_number, "approved": True, "action": _action_record()}
    with Store.open(tmp_path / "s") as store:
        store.append("opportunities", "arbitrum-spotter", rec)
    code = KILLED_MID_RUN.format(store=str(tmp_path / "s"),
                                 setup=setup_of(arb))
    for sig in (signal.SIGKILL, signal.SIGTERM):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            pid = int(child.stdout.readline())
            assert not gone(pid)
            child.send_signal(sig)
            child.wait(10)
            deadline = time.monotonic() + 5
            while not gone(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert gone(pid), (sig, pid)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()


def _action_record() -> dict:
    from engine.arb.types import Action, Hop, Loan, LoanSource, PoolKind, Route
    from engine.arb.wire import action_record
    t0, t1, p0, p1 = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "aa" * 20, "0x" + "bb" * 20
    return action_record(Action(
        chain="arbitrum", route=Route((Hop(p0, PoolKind.V2, t0, t1, 30, "uni-v2"),
                                       Hop(p1, PoolKind.V3, t1, t0, 500, "uni-v3"))),
        amount_in=10**18, expected_out=10**18 + 10**15,
        loan=Loan(LoanSource.BALANCER, "0x" + "cc" * 20, t0, 10**18, 0), min_profit=1,
        expected_profit=10**15, gas_limit=228_000, max_fee_per_gas=2 * 10**9,
        max_priority_fee_per_gas=0, deadline=1_900_000_000, event_id="arbitrum:0x1:0x2:3"))


def test_in_a_real_engine_the_executor_fork_tests_and_the_spotter_loads_it(
        devnet, arb, engine_factory, tmp_path):
    """The executor role's own chains (rpc, contract, caller, owner from its ChainDesk) and
    the spotter's decisions from big swaps: fork-testing publishes, load-model takes it."""
    import json
    from engine.devnet import Traffic
    from enginehelp import LIGHT
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    e = engine_factory(roles={
        "monitor-arbitrum": {"kind": "roles.monitor:ChainMonitor", "chains": ["arbitrum"]},
        "arbitrum-spotter": {"kind": "roles.agents:Spotter", "chains": ["arbitrum"],
                             "options": {"max_age_s": 60.0},
                             "tasks": {"load-model": {"interval": 0.5}, **LIGHT["tasks"]}},
        "flash-loan-executor": {"kind": "roles.executor:Executor", "chains": ["arbitrum"],
                                "subscribe": False, "inbox": "interrupt",
                                "tasks": {"fork-testing": {"interval": 2.0}, **LIGHT["tasks"]}}},
        rings={"slot_size": 1024}, chains={"manifest": str(manifest)}).start()
    e.wait_for(lambda: (e.roles()["arbitrum-spotter"].get("info") or {}).get("gas"), 60,
               "the spotter pricing")
    t = Traffic(devnet.manifest, rate=50, seed=21, chains=["arbitrum"])

    def tested():
        t.step(big=True)
        ex = json.loads(e.cli("status", "-c", str(e.path), "--tasks", "--json").stdout)
        ft = ex["flash-loan-executor"]["tasks"]["fork-testing"]
        return "on a fork" in (ft.get("summary") or "") and ft
    ft = e.wait_for(tested, 90, "a fork test by the executor role", poll=1.0)
    print(json.dumps({"fork-testing": ft}, default=str))

    def loaded():          # a landed test (a route may revert: the agent's gas limit, say)
        t.step(big=True)
        return ((e.roles()["arbitrum-spotter"].get("info") or {}).get("model") or {}) \
            .get("fork_shapes")
    e.wait_for(loaded, 60, "the spotter's fork-measured gas", poll=1.0)
    assert e.roles()["flash-loan-executor"]["restarts"] == 0
    assert e.stop() == 0
    from engine.core.store import ReadOnlyStore
    s = ReadOnlyStore.open(e.store_dir)
    try:
        with s.read() as r:
            for _, v in r.records("models", FORK_KEY):
                print(json.dumps([(x["shape"], x["verdict"], x["gas_used"], x["gas_limit"])
                                  for x in v["routes"]]))
    finally:
        s.close()
