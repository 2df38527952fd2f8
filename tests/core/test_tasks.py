"""The background task manager, driven directly (issue 3): priorities, the concurrency cap,
bounded slices, preemption at a safe point, waits on I/O, missed intervals, state round trips."""
from __future__ import annotations

import os
import socket
import time

import pytest

from engine.core.tasks import NotReady, Priority, Task, TaskContext, TaskManager, Wait
from roles.tasks import ChecksumTask, GasSampler
from fakes import Clock
from taskhelp import ListLog


class Counter(Task):
    interval = 0.0

    def initial_state(self):
        return {"i": 0}

    def run(self, ctx):
        end = self.state["i"] // 100 * 100 + 100
        while self.state["i"] < end:
            self.state["i"] += 1
            yield None


def mgr(tasks, **kw):
    return TaskManager(tasks, TaskContext("r"), **kw)


def test_higher_priority_runs_first():
    lo, hi = Counter(name="lo", priority="low"), Counter(name="hi", priority="high")
    m = mgr([lo, hi], max_concurrent=5, slice_budget_us=10_000_000)
    flag = [False]
    m.run_slice(flag)
    assert hi.state["i"] == 100 and lo.state["i"] == 0


def test_concurrency_cap():
    ts = [Counter(name=f"t{i}") for i in range(8)]
    m = mgr(ts, max_concurrent=3, slice_budget_us=1)
    m.run_slice([False])
    assert sum(1 for e in m.entries.values() if e.gen is not None) == 3


def test_slice_stops_at_budget_and_at_interrupt():
    t = Counter(name="c")
    m = mgr([t], slice_budget_us=1)            # 1 µs: one step per slice
    m.run_slice([False])
    assert 1 <= t.state["i"] < 100
    flag = [True]                               # an interrupt pending: stop after one step
    i0 = t.state["i"]
    m2 = mgr([Counter(name="d")], slice_budget_us=10_000_000)
    m2.run_slice(flag)
    assert m2.entries["d"].task.state["i"] == 1
    assert t.state["i"] == i0


def test_preempted_task_resumes_exactly_where_it_stopped():
    a, b = Counter(name="a"), Counter(name="b")
    m = mgr([a, b], slice_budget_us=10_000_000)
    flag = [False]

    class Interrupting(Counter):
        def run(self, ctx):
            for x in super().run(ctx):
                if self.state["i"] == 37:
                    flag[0] = True
                yield x
    c = Interrupting(name="c", priority="high")
    m = mgr([a, c], slice_budget_us=10_000_000)
    m.run_slice(flag)
    assert c.state["i"] == 37
    flag[0] = False
    m.run_slice(flag)                           # the same generator, from step 38
    assert c.state["i"] == 100


def test_missed_intervals_counted():
    clock = Clock(100.0)

    class Slow(Task):
        interval = 1.0

        def run(self, ctx):
            clock.t += 3.5                       # a run that takes 3.5 intervals
            yield None
    m = TaskManager([Slow(name="s")], TaskContext("r"), clock=clock, slice_budget_us=10**7)
    m.run_slice([False])
    m.run_slice([False])
    st = m.statistics()["tasks"]["s"]
    assert st["completed"] == 1 and st["missed_intervals"] == 3


def test_wait_on_fd_parks_the_task():
    r, w = os.pipe()

    class Reader(Task):
        interval = 0.0

        def run(self, ctx):
            yield Wait(fd=r, until=time.monotonic() + 10)
            self.state["got"] = os.read(r, 10).decode()
    t = Reader(name="rd")
    m = mgr([t], slice_budget_us=10**7)
    assert m.run_slice([False]) is True         # started, parked on the fd
    assert m.run_slice([False]) is False        # nothing runnable
    timeout, rd, wr = m.next_wakeup()
    assert rd == [r] and timeout is not None
    os.write(w, b"hi")
    m.run_slice([False])
    assert t.state["got"] == "hi"
    os.close(r), os.close(w)


def test_states_round_trip_mid_run():
    t = ChecksumTask(options={"links_per_run": 1000, "links_per_step": 10})
    m = mgr([t], slice_budget_us=1)
    for _ in range(5):
        m.run_slice([False])
    saved = m.states()
    assert saved["checksum"]["in_run"] is True
    n = saved["checksum"]["state"]["n"]
    assert saved["checksum"]["state"]["digest"] == ChecksumTask.expected(n)
    t2 = ChecksumTask(options={"links_per_run": 1000, "links_per_step": 10})
    m2 = mgr([t2], slice_budget_us=10**7)
    assert m2.restore(saved) == ["checksum"]
    m2.run_slice([False])                       # finishes the interrupted run
    assert t2.state["n"] == 1000
    assert t2.state["digest"] == ChecksumTask.expected(1000)


def test_pause_and_shed():
    lo, hi = Counter(name="lo", priority=Priority.LOW), Counter(name="hi", priority="medium")
    m = mgr([lo, hi], slice_budget_us=10**7)
    m.pause()
    assert m.run_slice([False]) is False
    m.resume()
    m.shed(True)
    m.run_slice([False]), m.run_slice([False])
    assert lo.state["i"] == 0 and hi.state["i"] > 0


def test_failing_task_is_counted_not_fatal():
    class Bad(Task):
        interval = 5.0

        def run(self, ctx):
            yield None
            raise RuntimeError("boom")
    errors = []
    m = TaskManager([Bad(name="bad")], TaskContext("r"), slice_budget_us=10**7,
                    on_error=lambda t, e: errors.append(e))
    m.run_slice([False])
    st = m.statistics()["tasks"]["bad"]
    assert st["errors"] == 1 and "boom" in st["last_error"] and errors


def test_a_task_whose_input_is_not_there_yet_retries_in_seconds_not_an_interval():
    """An hourly task started before the monitors' first graph snapshot: NotReady is retried
    after its few seconds, never counted as an error, logged once (info), and forgotten when
    a run completes."""
    ready = [False]

    class Hourly(Task):
        interval = 3600.0

        def run(self, ctx):
            yield None
            if not ready[0]:
                raise NotReady("no pool graph yet", retry_after=5.0)
            yield None

    lines, errors = [], []
    clock = Clock(100.0)
    m = TaskManager([Hourly(name="paths")], TaskContext("r"), slice_budget_us=10**7,
                    clock=clock, on_error=lambda t, e: errors.append(e),
                    log=type("L", (), {"info": lambda s, m, **f: lines.append(("info", m, f)),
                                       "error": lambda s, m, **f: lines.append(("error", m, f))})())
    for _ in range(3):                      # three slices at t=100: one run, not ready
        m.run_slice([False])
    st = m.statistics()["tasks"]["paths"]
    assert st["last_error"] == "not ready: no pool graph yet" and st["errors"] == 0, st
    assert st["runs"] == 0 and not errors
    clock.t = 104.0                          # not yet due again
    m.run_slice([False])
    assert m.statistics()["tasks"]["paths"]["last_error"].startswith("not ready")
    clock.t = 105.5                          # due again after 5 s, not 3 600: still not ready
    for _ in range(3):
        m.run_slice([False])
    assert [x[0] for x in lines] == ["info"] and "waiting for its input" in lines[0][1]
    ready[0] = True
    clock.t = 111.0
    for _ in range(3):
        m.run_slice([False])
    st = m.statistics()["tasks"]["paths"]
    assert st["completed"] == 1 and st["runs"] == 1 and st["errors"] == 0, st
    assert st["completion_rate"] == 1.0 and st["last_error"] == "" and not errors
    assert [x[0] for x in lines] == ["info"]     # no "recovered" line: nothing had failed


def test_duplicate_names_refused():
    with pytest.raises(ValueError, match="duplicate task names: x"):
        mgr([Counter(name="x"), Counter(name="x")])


def test_gas_sampler_waits_on_io_against_a_real_http_server():
    """The I/O task against a real local JSON-RPC endpoint (a minimal HTTP server thread)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import json

    prices = iter([10**9, 10**9, 2 * 10**9])

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            result = hex(next(prices)) if body["method"] == "eth_gasPrice" else "0x10"
            data = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass
    srv = HTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    found = []
    try:
        t = GasSampler(options={"rpc": f"http://127.0.0.1:{srv.server_port}", "alert_pct": 50},
                       interval=0.0)
        m = TaskManager([t], TaskContext("r", discover=lambda task, rec: found.append(rec)),
                        slice_budget_us=10**7)
        deadline = time.monotonic() + 20
        while t.state["samples"] < 3 and time.monotonic() < deadline:
            if not m.run_slice([False]):
                time.sleep(0.001)
        assert t.state["samples"] == 3, t.state
        assert t.state["last_gwei"] == 2.0
        assert found and found[0]["kind"] == "gas-move"
    finally:
        srv.shutdown()
        srv.server_close()


def test_gas_sampler_dead_endpoint_is_an_error_not_a_hang():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nobody listens there
    t = GasSampler(options={"rpc": f"http://127.0.0.1:{port}", "timeout": 2.0}, interval=0.0)
    m = mgr([t], slice_budget_us=10**7)
    deadline = time.monotonic() + 10
    while t.state["errors"] == 0 and time.monotonic() < deadline:
        if not m.run_slice([False]):
            time.sleep(0.001)
    assert t.state["errors"] >= 1 and "Connection refused" in t.state["last_error"] or \
        "connect" in t.state["last_error"]


def test_retention_counts_only_the_states_of_tasks_the_role_still_runs(tmp_path):
    """A checkpoint from a run with the checksum on, restored by a role that no longer runs it
    (engine.toml turned it off): nothing the role runs lost its state, so retention is whole;
    a state that is not an object counts as saved and lost."""
    from engine.core.checkpoint import restore
    from engine.core.store import Store
    t = ChecksumTask(options={"links_per_run": 1000, "links_per_step": 10})
    other = ChecksumTask(name="other")
    m = mgr([t, other], slice_budget_us=1)
    for _ in range(5):
        m.run_slice([False])
    with Store.open(tmp_path / "s") as store:
        store.save_checkpoint("r", m.states())
        assert restore(store, None, mgr([ChecksumTask(name="other")]), "r", ListLog()) == (1, 1)
        assert restore(store, None, mgr([ChecksumTask(), ChecksumTask(name="other")]), "r",
                       ListLog()) == (2, 2)
        states = m.states()
        states["other"] = "not an object"
        store.save_checkpoint("r", states)
        assert restore(store, None, mgr([ChecksumTask(), ChecksumTask(name="other")]), "r",
                       ListLog()) == (2, 1)
