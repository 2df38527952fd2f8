"""The supervisor's decisions with its fork, waitpid, kill and clock replaced: starts, backoff,
reloads, stops, fork failures, without a single role process.  Shared memory and the store are
real (unique names, removed by cleanup).  The real-process behaviour is in test_supervisor.py."""
from __future__ import annotations

import copy
import signal
from types import SimpleNamespace

import pytest

from engine import config
from engine.core.control import F, State
from engine.core.role import resolve_kind
from engine.core.supervisor import Supervisor
from fakes import Clock

KILLED = signal.SIGKILL
ROLES = {
    "mon": {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"]},
    "a": {"kind": "roles.agents:Agent", "chains": ["arbitrum"]},
    "b": {"kind": "roles.agents:Agent", "chains": ["base"], "restart": "temporary"},
}


class Fakes:
    def __init__(self):
        self.clock = Clock()
        self.next_pid = 200
        self.forks = 0
        self.fork_error: OSError | None = None
        self.sent: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []

    def fork(self) -> int:
        if self.fork_error:
            raise self.fork_error
        self.forks += 1
        self.next_pid += 1
        return self.next_pid

    def waitpid(self, pid, flags):
        return self.exits.pop(0) if self.exits else (0, 0)

    def kill(self, pid, sig):
        self.sent.append((pid, sig))


def never_forked(*args):
    raise AssertionError("the fake fork never returns 0: no role body runs in the test")


@pytest.fixture
def rig(tmp_path, unique_name):
    doc = {"engine": {"name": unique_name, "state_dir": str(tmp_path / "state"), "grace": 3.0},
           "supervisor": {"backoff_initial": 0.5, "max_restarts": 10},
           "roles": copy.deepcopy(ROLES)}
    path = tmp_path / "engine.toml"
    path.write_text(config.render(doc))
    cfg = config.load(path)
    log = SimpleNamespace(**{k: (lambda *a, **k: None) for k in
                             ("info", "warning", "error", "debug", "log")})
    fk = Fakes()
    s = Supervisor(cfg, log=log, kinds={n: resolve_kind(r["kind"]) for n, r in ROLES.items()},
                   resolve_kind=resolve_kind, role_main=never_forked,
                   clock=fk.clock, fork=fk.fork, waitpid=fk.waitpid, kill=fk.kill)

    def rewrite(edit):
        edit(doc)
        path.write_text(config.render(doc))
    try:
        s.build()
        (cfg.run_dir / "roles").mkdir(parents=True)
        for role in ("mon", "a", "b"):
            s.spawn(role)
        yield SimpleNamespace(s=s, fk=fk, rewrite=rewrite)
    finally:
        s.cleanup()


def pid(s, role):
    return s.pid_of(role)


def test_spawn_records_each_child(rig):
    s, fk = rig.s, rig.fk
    assert fk.forks == 3 and sorted(c.role for c in s.children.values()) == ["a", "b", "mon"]
    slot = s.wiring.control.slot(s.wiring.slots["a"])
    assert slot.get(F.PID) == pid(s, "a") and slot.state == State.STARTING
    assert (s.cfg.run_dir / "roles" / "a.pid").read_text().strip() == str(pid(s, "a"))


def test_a_crash_restarts_after_the_backoff_and_temporary_stays_down(rig):
    s, fk = rig.s, rig.fk
    a, b = pid(s, "a"), pid(s, "b")
    fk.exits[:] = [(a, KILLED), (b, KILLED), (999, 0)]           # 999: not ours, tolerated
    s.reap()
    assert s.restart_at == {"a": fk.clock.t + 0.5}
    assert pid(s, "b") is None and "b" not in s.restart_at       # temporary: not restarted
    s.start_due()
    assert fk.forks == 3                                         # not due yet
    fk.clock.advance(0.5)
    s.start_due()
    assert fk.forks == 4 and pid(s, "a") not in (None, a)


def test_fork_failure_retries_a_second_later(rig):
    s, fk = rig.s, rig.fk
    fk.fork_error = OSError(11, "Resource temporarily unavailable")
    s.spawn("a")
    assert s.restart_at["a"] == fk.clock.t + 1.0


def test_hup_restarts_only_the_changed_role_and_adds_and_retires(rig):
    s, fk = rig.s, rig.fk
    a, b = pid(s, "a"), pid(s, "b")

    def edit(doc):
        doc["roles"]["a"]["options"] = {"rpc": "http://127.0.0.1:1"}
        doc["roles"].pop("b")
        doc["roles"]["c"] = {"kind": "roles.agents:Agent", "chains": ["base"]}
    rig.rewrite(edit)
    s.handle_signal(signal.SIGHUP)
    assert sorted(fk.sent) == sorted([(a, signal.SIGTERM), (b, signal.SIGTERM)])
    assert s.reload_pending == {"a"} and s.retired == {"b"}
    assert s.restart_at == {"c": fk.clock.t}
    fk.exits[:] = [(a, 0), (b, 0)]
    s.reap()
    assert s.restart_at == {"c": fk.clock.t, "a": fk.clock.t}    # a: with its new config
    assert s.wiring.control.slot(s.wiring.slots["b"]).state == State.STOPPED
    s.start_due()
    assert {c.role for c in s.children.values()} == {"mon", "a", "c"}
    assert s.cfg.roles["a"].options == {"rpc": "http://127.0.0.1:1"}


def test_a_broken_file_on_hup_changes_nothing(rig):
    s, fk = rig.s, rig.fk
    before = s.cfg
    rig.rewrite(lambda doc: doc["roles"]["a"].update(restart="sometimes"))
    s.handle_signal(signal.SIGHUP)
    assert s.cfg is before and fk.sent == [] and not s.restart_at


def test_term_asks_every_role_and_a_second_int_kills(rig):
    s, fk = rig.s, rig.fk
    s.handle_signal(signal.SIGINT)
    assert s.stopping and s.stop_deadline == fk.clock.t + 3.0
    assert sorted(sig for _, sig in fk.sent) == [signal.SIGTERM] * 3
    fk.sent.clear()
    s.handle_signal(signal.SIGINT)
    assert sorted(sig for _, sig in fk.sent) == [signal.SIGKILL] * 3
    fk.exits[:] = [(c.pid, KILLED) for c in list(s.children.values())]
    s.reap()
    assert not s.children and not s.restart_at                   # nothing restarts in a stop
