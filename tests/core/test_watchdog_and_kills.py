"""Durable state and the watchdog in a real engine (issue 4): a role SIGKILLed 100 times under
load loses nothing it committed and always resumes from its checkpoint; a leaking role is
restarted at its hard limit while the others keep running; a role stuck in a long C call is
detected and restarted; `syndicate snapshot` reads the live store."""
from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from engine.core.store import Store
from enginehelp import agent


def fault(**options):
    r = agent(["arbitrum"])
    r["kind"] = "roles.faults:FaultAgent"
    r["options"] = options
    return r


def source(rate=50.0):
    return {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"],
            "options": {"rate": rate}}


def discoveries(store_dir, role) -> list[tuple[int, int]]:
    """(seq, k) of every committed discovery of `role`, read-only beside the live engine."""
    s = Store.open(store_dir, readonly=True)
    try:
        with s.read() as r:
            return [(seq, rec["k"]) for seq, rec in r.records("discoveries", role)]
    finally:
        s.close()


@pytest.mark.slow
def test_role_killed_100_times_loses_nothing_committed(engine_factory):
    e = engine_factory(roles={"src": source(), "worker": fault(discover=True),
                              "bystander": agent(["arbitrum"])},
                       supervisor={"max_restarts": 1000, "restart_window": 10.0,
                                   "backoff_initial": 0.01, "backoff_max": 0.05}).start()
    rng = random.Random(7)
    seen: set[tuple[int, int]] = set()
    bystander = e.role_pids()["bystander"]
    kills = 100
    for i in range(kills):
        pid = e.wait_for(lambda: (r := e.roles().get("worker")) and r["alive"] and
                         r["state"] not in ("starting", "restarting") and r["pid"], 20,
                         "worker up", poll=0.01)
        time.sleep(rng.uniform(0.0, 0.12))
        if i % 10 == 0:
            seen |= set(discoveries(e.store_dir, "worker"))
        os.kill(pid, signal.SIGKILL)
        e.wait_for(lambda: e.roles()["worker"]["pid"] != pid, 20, "worker reaped", poll=0.01)
    e.wait_for(lambda: (r := e.roles()["worker"])["alive"] and r["restarts"] == kills, 20,
               "last restart")
    time.sleep(0.5)
    assert e.roles()["bystander"]["pid"] == bystander
    assert e.stop() == 0
    final = discoveries(e.store_dir, "worker")
    assert seen <= set(final), "a committed discovery disappeared"
    seqs = [s for s, _ in final]
    assert seqs == list(range(1, len(final) + 1))          # no hole, no repeat
    ks = [k for _, k in final]
    assert all(b > a for a, b in zip(ks, ks[1:])), "a count went backwards"
    assert len(final) > kills                              # work went on between kills
    log = e.stderr()
    assert log.count("worker") and log.count("resumed from") >= kills


def test_leaking_role_restarted_at_hard_limit_others_keep_running(engine_factory):
    leaky = fault(leak_mib_per_s=80)
    leaky.update(memory_soft="60MiB", memory_hard="90MiB")
    e = engine_factory(roles={"leaky": leaky, "calm": agent(["arbitrum"])},
                       watchdog={"interval_ms": 100, "abort_grace": 2.0}).start()
    calm = e.role_pids()["calm"]
    r = e.wait_for(lambda: (x := e.roles()["leaky"])["restarts"] >= 1 and x["alive"] and x, 60,
                   "restart at the hard limit")
    assert r["watchdog_actions"] >= 2                      # soft (shed), then hard
    assert e.roles()["calm"]["pid"] == calm and e.roles()["calm"]["restarts"] == 0
    err = e.stderr()
    assert "watchdog memory soft" in err and "watchdog memory hard" in err
    assert e.stop() == 0
    s = Store.open(e.store_dir, readonly=True)
    try:
        with s.read() as rd:
            kinds = [v["kind"] for _, v in rd.items_decoded("events")] \
                if hasattr(rd, "items_decoded") else \
                [json.loads(v)["kind"] for _, v in rd.items("events")]
    finally:
        s.close()
    assert "watchdog_memory_hard" in kinds and "watchdog_memory_soft" in kinds


def test_role_stuck_in_a_c_call_is_aborted_and_restarted(engine_factory, tmp_path):
    stuck = fault(stall_after_s=0.5, stall_flag=str(tmp_path / "stalled-once"))
    e = engine_factory(roles={"stuck": stuck, "calm": agent(["arbitrum"])},
                       watchdog={"interval_ms": 100, "heartbeat_timeout": 1.5,
                                 "abort_grace": 1.0}).start()
    pid = e.role_pids()["stuck"]
    r = e.wait_for(lambda: (x := e.roles()["stuck"])["restarts"] >= 1 and x["alive"] and x,
                   30, "stalled role restarted")
    assert r["pid"] != pid
    assert r["last_exit"] == 1000 + signal.SIGABRT
    err = e.stderr()
    assert "watchdog stalled" in err
    assert "Fatal Python error: Aborted" in err            # faulthandler's stack dump
    assert e.roles()["calm"]["restarts"] == 0
    assert e.stop() == 0


def test_snapshot_reads_a_live_engine(engine_factory):
    import subprocess
    import sys
    e = engine_factory(roles={"src": source(20.0), "worker": fault(discover=True)}).start()
    e.wait_for(lambda: e.roles()["worker"]["switches"] >= 3, 20, "switches")
    assert e.cli("ctl", "-c", str(e.path), "all", "checkpoint").returncode == 0
    e.wait_for(lambda: e.roles()["worker"]["checkpoints"] >= 2, 10, "checkpoint")
    run = lambda *a: subprocess.run([sys.executable, "-m", "engine.cli", "snapshot",
                                     str(e.store_dir), *a], capture_output=True, text=True,
                                    timeout=60)
    info = run("info")
    assert info.returncode == 0, info.stderr
    assert "worker" in info.stdout and "discoveries" in info.stdout
    ls = run("ls", "discoveries", "--prefix", "worker")
    assert ls.returncode == 0 and "worker/" in ls.stdout
    exp = run("export", "--db", "tasks", "--format", "jsonl")
    assert exp.returncode == 0 and '"discover"' in exp.stdout
    assert e.stop() == 0
