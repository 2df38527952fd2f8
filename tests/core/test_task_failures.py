"""A background task's failures are seen (issue 9, 3.2): they reach the task's error count and
completion rate, the role's status, and the log (rate-limited), whether the task raises `Failed`
(an expected failure: an endpoint down) or has a bug; the task lives on."""
from __future__ import annotations

import json
import socket
import time

from engine.core.tasks import Failed, Task, TaskContext, TaskManager, TaskStats
from roles.tasks import GasSampler


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Lines:
    """Collects what the manager logs (the role passes its real Log)."""

    def __init__(self):
        self.lines: list[tuple[str, str, dict]] = []

    def error(self, msg, **f):
        self.lines.append(("error", msg, f))

    def info(self, msg, **f):
        self.lines.append(("info", msg, f))


class Flaky(Task):
    """Fails its runs while `down` is true, as an RPC reader does while its node is down."""
    interval = 1.0
    down = True

    def run(self, ctx):
        yield None
        if self.down:
            raise Failed("node unreachable")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nobody listens there
    return port


def test_gas_sampler_against_a_dead_endpoint_fails_its_runs():
    t = GasSampler(options={"rpc": f"http://127.0.0.1:{closed_port()}", "timeout": 2.0},
                   interval=0.0)
    log = Lines()
    m = TaskManager([t], TaskContext("r"), slice_budget_us=10**7, log=log)
    deadline = time.monotonic() + 10
    while m.statistics()["tasks"]["gas-sampler"]["runs"] < 3 and time.monotonic() < deadline:
        if not m.run_slice([False]):
            time.sleep(0.001)
    m.run_slice([False])
    st = m.statistics()["tasks"]["gas-sampler"]
    assert st["errors"] >= 2 and st["completed"] == 0, st
    assert st["completion_rate"] == 0.0
    assert "refused" in st["last_error"].lower() or "connect" in st["last_error"], st
    errors = [f for level, msg, f in log.lines if level == "error"]
    assert len(errors) == 1, log.lines        # the first failure, then quiet for a while
    assert errors[0]["task"] == "gas-sampler" and errors[0]["failures"] == 1


def test_failures_are_logged_rate_limited_with_a_count_then_recovery():
    clock = Clock()
    t = Flaky(name="reader")
    log = Lines()
    counted = []
    m = TaskManager([t], TaskContext("r"), slice_budget_us=10**7, clock=clock, log=log,
                    error_log_interval=30.0, on_error=lambda task, exc: counted.append(exc))
    for _ in range(10):                          # ten failed runs within 10 s
        m.run_slice([False])
        m.run_slice([False])
        clock.t += 1.0
    st = m.statistics()["tasks"]["reader"]
    assert st["errors"] == 10 and st["completed"] == 0 and len(counted) == 10
    assert st["last_error"] == "node unreachable"
    assert [f["failures"] for _, _, f in log.lines] == [1]
    clock.t += 30.0                              # the quiet period is over: one line, a count
    m.run_slice([False]), m.run_slice([False])
    assert [f["failures"] for _, _, f in log.lines] == [1, 10]
    assert m.statistics()["tasks"]["reader"]["errors"] == 11
    t.down = False                               # back: one line says so, with the count
    clock.t += 1.0
    m.run_slice([False]), m.run_slice([False])
    assert log.lines[-1][0] == "info" and log.lines[-1][2]["failures"] == 0 and \
        "recovered" in log.lines[-1][1]
    st = m.statistics()["tasks"]["reader"]
    assert st["completed"] == 1 and st["completion_rate"] == 1 / 12


def test_a_bug_is_a_failure_too_and_the_task_runs_again():
    class Buggy(Task):
        interval = 0.0

        def run(self, ctx):
            yield None
            raise KeyError("oops")
    clock = Clock()
    log = Lines()
    m = TaskManager([Buggy(name="b")], TaskContext("r"), slice_budget_us=10**7, clock=clock,
                    log=log)
    for _ in range(4):
        m.run_slice([False])
    st = m.statistics()["tasks"]["b"]
    assert st["runs"] == 4 and st["errors"] == 4 and "KeyError" in st["last_error"]
    assert len(log.lines) == 1


def test_stats_round_trip_through_a_checkpoint_record():
    st = TaskStats(runs=7, completed=4, errors=3, missed=2, busy_ns=5_000_000,
                   run_ns_total=8_000_000, last_error="x: refused")
    back = TaskStats.from_dict(json.loads(json.dumps(st.as_dict())))
    assert back == st


def test_failed_runs_reach_status_and_the_log_of_a_real_engine(engine_factory):
    """With its node down, an agent's gas-sampler fails every run: `status` counts the errors,
    `status --tasks` shows them and a completion rate below 100 %, the log says so once."""
    from enginehelp import agent
    roles = {"spotter": agent(["arbitrum"], options={"rpc": f"http://127.0.0.1:{closed_port()}"})}
    roles["spotter"]["tasks"]["gas-sampler"] = {"interval": 0.1}
    t0 = time.monotonic()
    e = engine_factory(roles=roles).start()
    e.wait_for(lambda: e.roles()["spotter"]["task_errors"] >= 3, 20, "task errors in status")
    assert e.cli("ctl", "-c", str(e.path), "all", "checkpoint").returncode == 0
    e.wait_for(lambda: e.roles()["spotter"]["checkpoints"] >= 1, 10, "a checkpoint")

    def table():
        r = e.cli("status", "-c", str(e.path), "--tasks", "--json")
        return json.loads(r.stdout)["spotter"]["tasks"]["gas-sampler"] if r.returncode == 0 \
            else None
    gs = e.wait_for(lambda: (g := table()) and g["errors"] >= 3 and g, 10, "errors saved")
    assert gs["completed"] == 0 and gs["completion_rate"] == 0.0, gs
    text = e.cli("status", "-c", str(e.path), "--tasks").stdout
    row = next(line.split() for line in text.splitlines() if "gas-sampler" in line)
    assert row[5] == "0", text                    # DONE%
    assert "background task failures: spotter" in e.cli("status", "-c", str(e.path)).stdout
    assert e.stop() == 0
    log = (e.tmp / "state" / "log" / f"{e.name}.log").read_text()
    failed = [line for line in log.splitlines()
              if "background task failed" in line and "gas-sampler" in line]
    # rate-limited: the first failure, then at most a line every 30 s, not one per failure
    assert 1 <= len(failed) <= 1 + (time.monotonic() - t0) // 30, failed
