"""Restart policy and intensity, driven with a fake clock and a replaced waitpid (issue 2)."""
from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

from engine.core.policy import RestartPolicy, describe_status
from fakes import Clock

KILLED = signal.SIGKILL            # waitpid status of a process killed by SIGKILL
EXIT0, EXIT1, EXIT75 = 0, 1 << 8, 75 << 8


def policy(clock, **kw):
    args = dict(max_restarts=3, restart_window=10.0, backoff_initial=0.1, backoff_max=1.0)
    args.update(kw)
    return RestartPolicy(clock=clock, **args)


def test_describe_status():
    assert describe_status(EXIT0) == "exit 0"
    assert describe_status(EXIT1) == "exit 1"
    assert describe_status(KILLED) == "killed by SIGKILL"


def test_permanent_restarts_with_exponential_backoff_capped():
    c = Clock()
    p = policy(c, max_restarts=100)
    delays = []
    for _ in range(6):
        v = p.on_exit("r", "permanent", KILLED, started=c.t)
        assert v.restart and not v.give_up
        delays.append(v.delay)
        c.t += 0.01
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_resets_after_a_long_run():
    c = Clock()
    p = policy(c, max_restarts=100)
    for _ in range(3):
        p.on_exit("r", "permanent", KILLED, started=c.t)
    c.t += 60
    assert p.on_exit("r", "permanent", KILLED, started=c.t - 30).delay == 0.1


def test_intensity_exceeded_within_window():
    c = Clock()
    p = policy(c)
    for _ in range(3):
        assert p.on_exit("a", "permanent", KILLED, started=c.t).restart
        c.t += 1
    v = p.on_exit("a", "permanent", KILLED, started=c.t)
    assert v.give_up and not v.restart
    assert "restart intensity exceeded" in v.reason and "a killed by SIGKILL" in v.reason


def test_intensity_window_slides():
    c = Clock()
    p = policy(c)
    for _ in range(3):
        p.on_exit("a", "permanent", KILLED, started=c.t)
        c.t += 4                  # 3 restarts spread over 12 s: the window holds at most 3
    assert not p.on_exit("a", "permanent", KILLED, started=c.t).give_up


def test_intensity_counts_all_roles_together():
    c = Clock()
    p = policy(c)
    for role in ("a", "b", "c"):
        p.on_exit(role, "permanent", EXIT1, started=c.t)
    assert p.on_exit("d", "permanent", EXIT1, started=c.t).give_up


@pytest.mark.parametrize("policy_name,status,restart", [
    ("permanent", EXIT0, True), ("permanent", EXIT1, True), ("permanent", KILLED, True),
    ("transient", EXIT0, False), ("transient", EXIT1, True), ("transient", KILLED, True),
    ("temporary", EXIT0, False), ("temporary", EXIT1, False), ("temporary", KILLED, False),
])
def test_policies(policy_name, status, restart):
    c = Clock()
    assert policy(c).on_exit("r", policy_name, status, started=c.t).restart is restart


def test_requested_restart_ignores_policy_and_intensity():
    c = Clock()
    p = policy(c, max_restarts=0)
    v = p.on_exit("r", "temporary", EXIT75, started=c.t)
    assert v.restart and v.delay == 0 and not v.give_up


def test_watchdog_stop_is_abnormal_even_with_exit_0():
    c = Clock()
    v = policy(c).on_exit("r", "transient", EXIT0, started=c.t, stopped_by_watchdog=True)
    assert v.restart and "stopped by the watchdog" in v.reason


def test_nothing_restarts_while_stopping():
    c = Clock()
    assert not policy(c).on_exit("r", "permanent", KILLED, started=c.t, stopping=True).restart


def test_supervisor_reap_with_waitpid_replaced(tmp_path):
    """The supervisor's reap loop: unknown pids tolerated, restarts scheduled with the policy's
    delay, intensity exhaustion begins the stop — with waitpid and the clock replaced."""
    from engine import config
    from engine.core import supervisor as sup_mod
    from engine.core.control import ControlBlock, State

    cfg = config.from_dict({"engine": {"name": "x", "state_dir": str(tmp_path)},
                            "supervisor": {"max_restarts": 2, "restart_window": 10.0,
                                           "backoff_initial": 0.5},
                            "roles": {"a": {"kind": "roles.agents:Agent"}}},
                           path=tmp_path / "engine.toml")
    log = SimpleNamespace(**{k: (lambda *a, **k: None) for k in
                             ("info", "warning", "error", "debug", "log")})
    c = Clock()
    sent = []
    results = []
    from engine.core.role import resolve_kind, role_main
    s = sup_mod.Supervisor(cfg, log=log, kinds={}, clock=c, resolve_kind=resolve_kind,
                           role_main=role_main,
                           kill=lambda pid, sig: sent.append((pid, sig)),
                           waitpid=lambda pid, flags: results.pop(0) if results else (0, 0))
    name = f"reap{os.getpid()}"
    cb = ControlBlock.create(name, 4, os.getpid())
    try:
        s.wiring = sup_mod.Wiring(control=cb, supervisor_pid=os.getpid(), slots={"a": 0})
        cb.slot(0).reset("a")
        s.rundir = SimpleNamespace(remove_role=lambda r: None)

        s.children = {101: sup_mod.Child("a", 101, c.t, 0)}
        results[:] = [(999, KILLED), (101, KILLED)]     # 999: not ours, tolerated
        s.reap()
        assert s.children == {} and s.restart_at == {"a": c.t + 0.5}
        assert cb.slot(0).state == State.RESTARTING and cb.slot(0).get(4) == 1

        s.restart_at.clear()
        s.children = {102: sup_mod.Child("a", 102, c.t, 0)}
        results[:] = [(102, EXIT1)]
        s.reap()
        assert s.restart_at == {"a": c.t + 1.0}          # second failure: doubled

        s.restart_at.clear()
        s.children = {103: sup_mod.Child("a", 103, c.t, 0), 104: sup_mod.Child("a", 104, c.t, 0)}
        results[:] = [(103, KILLED)]
        s.reap()                                          # third restart in the window: give up
        assert s.stopping and s.exit_code == 1
        assert "restart intensity exceeded" in s.exit_reason
        assert (104, signal.SIGTERM) in sent              # the others are asked to stop
    finally:
        cb.close()
        ControlBlock.unlink(name)
