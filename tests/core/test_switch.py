"""The atomic switch end to end, in a real engine (issue 3): bursts coalesce into one switch,
10 000 events are each handled exactly once, background state survives every switch, and a
paused role still takes interrupts without resuming its background work."""
from __future__ import annotations

import hashlib

import pytest

from enginehelp import agent, collect

PROBE = "roles.probe:ChecksumProbe"


def source(count, rate=200.0, burst=1, chain="arbitrum"):
    return {"kind": "roles.monitor:SyntheticSource", "chains": [chain],
            "options": {"rate": rate, "burst": burst, "count": count}}


def probe(**kw):
    r = agent(["arbitrum"], **kw)
    r["kind"] = PROBE
    r["tasks"] = {"checksum": {"interval": 0.0, "options": {"links_per_run": 5000}}}
    return r


def chain_ok(points):
    """Every (n, digest) reported must lie on the one hash chain, n never going back."""
    d = hashlib.blake2b(b"syndicate", digest_size=32).digest()
    n = 0
    for pn, pd in sorted(points):
        while n < pn:
            d = hashlib.blake2b(d, digest_size=32).digest()
            n += 1
        if d.hex() != pd:
            return False
    return True


def test_burst_of_50_is_one_switch(engine_factory):
    e = engine_factory(roles={"src": source(count=1, burst=50, rate=2.0), "spot": probe()}).start()
    got, lost = collect(e, "spot", 50, timeout=30)
    assert lost == 0 and len(got) == 50
    assert sorted(d["event"] for d in got) == sorted(f"arbitrum-{i}" for i in range(50))
    r = e.wait_for(lambda: (x := e.roles()["spot"]) and x["events"] == 50 and x, 10, "counted")
    assert r["switches"] == 1
    assert e.stop() == 0


@pytest.mark.slow
def test_10000_events_each_handled_exactly_once_state_intact(engine_factory):
    n = 10_000
    e = engine_factory(roles={"src": source(count=n, rate=1500.0), "spot": probe()},
                       rings={"event_slots": 16384, "inbox_slots": 16384}).start()
    got, lost = collect(e, "spot", n, timeout=240)
    assert lost == 0
    ids = [d["event"] for d in got]
    assert len(ids) == n and len(set(ids)) == n
    assert set(ids) == {f"arbitrum-{i}" for i in range(n)}
    # counters are updated just after the decision is published: wait for the last one
    r = e.wait_for(lambda: (x := e.roles()["spot"])["events"] == n and x, 10, "counters")
    assert r["events_lost"] == 0
    assert r["switches"] + r["coalesced"] <= r["interrupts"]
    assert r["switches"] <= n
    points = {(d["checksum"]["n"], d["checksum"]["digest"]) for d in got}
    assert len({p[0] for p in points}) > 10        # background work went on between switches
    assert chain_ok(points)
    assert e.stop() == 0


def test_paused_role_takes_interrupts_but_stays_paused(engine_factory):
    e = engine_factory(roles={"src": source(count=400, rate=40.0), "spot": probe()}).start()
    e.wait_for(lambda: e.roles()["spot"]["switches"] >= 3, 20, "first switches")
    assert e.cli("ctl", "-c", str(e.path), "spot", "pause").returncode == 0
    e.wait_for(lambda: e.roles()["spot"]["state"] == "paused", 10, "paused")
    s0 = e.roles()["spot"]["switches"]
    e.wait_for(lambda: e.roles()["spot"]["switches"] >= s0 + 20, 30, "switches while paused")
    assert e.roles()["spot"]["state"] == "paused"
    assert e.cli("ctl", "-c", str(e.path), "spot", "resume").returncode == 0
    e.wait_for(lambda: e.roles()["spot"]["switches"] >= s0 + 40, 30, "switches after resume")
    got, _ = collect(e, "spot", 10**9, timeout=2)
    paused = [d["checksum"]["n"] for d in got if d["paused"]]
    assert len(paused) >= 20
    assert len(set(paused)) == 1, "background work advanced while paused"
    after = [d["checksum"]["n"] for d in got if not d["paused"]]
    assert max(after) > paused[0]                  # and went on after resume
    assert chain_ok({(d["checksum"]["n"], d["checksum"]["digest"]) for d in got})
    assert e.stop() == 0


def test_restarted_role_resumes_its_checksum(engine_factory):
    import os
    import signal
    e = engine_factory(roles={"src": source(count=10**6, rate=20.0), "spot": probe()}).start()
    e.wait_for(lambda: e.roles()["spot"]["switches"] >= 5, 20, "switches")
    got, _ = collect(e, "spot", 10**9, timeout=1)
    before = max(d["checksum"]["n"] for d in got)
    os.kill(e.role_pids()["spot"], signal.SIGKILL)
    e.wait_for(lambda: (r := e.roles()["spot"])["restarts"] == 1 and r["alive"]
               and r["switches"] >= 10, 30, "restarted and switching")
    got, _ = collect(e, "spot", 10**9, timeout=1)
    # after the restart the chain continues from the last staged/committed state, intact
    assert chain_ok({(d["checksum"]["n"], d["checksum"]["digest"]) for d in got})
    assert max(d["checksum"]["n"] for d in got) >= before
    assert "resumed from" in e.stderr()
    assert e.stop() == 0


def test_switches_commit_their_staged_state_once_for_a_burst(engine_factory):
    """A switch stages its state in shared memory; the LMDB commit follows between background
    slices, one for all the switches of SWITCH_COMMIT_S, not one per switch."""
    e = engine_factory(roles={"src": source(count=20, rate=40.0), "spot": probe()},
                       store={"checkpoint_interval": 3600.0}).start()
    got, lost = collect(e, "spot", 20, timeout=30)
    assert lost == 0 and len(got) == 20
    r = e.wait_for(lambda: (x := e.roles()["spot"])["checkpoints"] >= 1 and x, 10,
                   "the staged state committed")
    assert r["switches"] >= 5                  # 20 events over 0.5 s: many switches...
    assert r["checkpoints"] < r["switches"]    # ...committed together
    assert r["checkpoint_errors"] == 0 and r["late_saves"] == 0
    assert e.stop() == 0


def test_a_decision_too_large_for_the_outbox_is_dropped_not_fatal(engine_factory):
    """Every 4th decision is padded past the slot size: it is dropped, counted and logged;
    the role neither crashes nor restarts, and every other decision goes out."""
    spot = agent(["arbitrum"], kind="roles.faults:FaultAgent", options={"oversize_every": 4})
    e = engine_factory(roles={"src": source(count=20, rate=50.0), "spot": spot}).start()
    got, lost = collect(e, "spot", 15, timeout=60)
    assert lost == 0 and len(got) == 15
    r = e.wait_for(lambda: (x := e.roles()["spot"]) and x["events"] == 20 and x, 20, "counted")
    assert r["decisions_dropped"] == 5 and r["decisions"] == 15
    assert r["restarts"] == 0
    assert e.stop() == 0
    assert e.stderr().count("decision dropped: too large for the outbox") == 5


def test_the_guides_switch_save_and_retention_figures_count_a_broken_switch(engine_factory,
                                                                         tmp_path):
    """A role SIGKILLed in the middle of its first switch: the supervisor counts the broken
    switch, the restart restores every saved task state, and `status` shows the guide's
    switch success, state saves and knowledge retention beside their goals."""
    spot = agent(["arbitrum"], kind="roles.faults:FaultAgent",
                 options={"crash_flag": str(tmp_path / "crashed")})
    e = engine_factory(roles={"src": source(count=40, rate=20.0), "spot": spot}).start()
    r = e.wait_for(lambda: (x := e.roles()["spot"]) and x["restarts"] == 1 and x["alive"]
                   and x["switches"] >= 3 and x["checkpoints"] >= 1 and x, 60,
                   "restarted, switching and committed")
    assert (tmp_path / "crashed").exists() and r["switches_broken"] == 1
    assert r["restore_saved"] >= 1 and r["restore_done"] == r["restore_saved"], r
    g = e.status()["guide"]
    assert g["switches_broken"] == 1 and g["knowledge_retention"] == 1.0, g
    assert g["switch_success"] == round((g["switches"] - g["late_saves"]) /
                                        (g["switches"] + 1), 5) < 1.0, g
    assert g["state_save_success"] == 1.0 and g["met"]["state_save_success"], g
    text = e.cli("status", "-c", str(e.path)).stdout
    line = next(x for x in text.splitlines() if x.startswith("guide: "))
    assert "state saves 100%" in line and "retention 100%" in line, line
    if not g["met"]["switch_success"]:       # one broken switch in a few dozen: below 99.9 %
        assert "switch success" in line and "(MISSED: goal > 99.90%)" in line, line
    assert e.stop() == 0
