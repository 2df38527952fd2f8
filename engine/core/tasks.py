"""The background task manager: what a role does when no opportunity needs it.

A task is a generator method (`Task.run`) that does one run of its work and *yields* at every
safe point — a place where `task.state` is consistent and could be saved.  The manager drives
the generators in short slices:

        due? ──► start run (≤ max_concurrent at once, highest priority first)
                      │
     ┌────────────────▼─────────────────┐   yield Wait(fd|until) ──► parked until ready
     │ slice: next(gen) … next(gen)     │
     │  until budget spent or interrupt │──► interrupt pending: stop at once (a safe point)
     └────────────────┬─────────────────┘
                      ▼ StopIteration: run complete, next due = start + interval
                        raise Failed(why) (or any exception): run failed, next due = now + interval
                        raise NotReady(why): its input is not there yet, next due = now + a few s

Why generators and not threads: a Python thread holding the GIL delays the main thread's signal
handler by the whole switch interval (5 ms by default; ARCHITECTURE.md), and a preempted thread's
state cannot be saved at a point of our choosing.  A generator stops exactly at a yield, so the
atomic switch can save a consistent state and later resume the very same generator where it
stopped.  The price is that a task must yield often (each step well under the slice budget,
default 200 µs); steps that overrun are counted.

A task's `state` is a JSON-serialisable value; a checkpoint saves it (with whether a run was in
progress) and a restarted role restores it, so a run must be written to continue from its state.

A run whose input is not there yet raises `NotReady("why")`: not an error, tried again after a
few seconds.  A run that cannot do its work (an endpoint down, a bad answer) raises `Failed("why")`; a bug
raises whatever it raises.  Either way the run counts as an error and not as a completion (so
the completion rate falls), the task lives on and runs again at its next interval, and the
role's log says so: the first failure at once, then at most one line per task every
`error_log_interval` seconds with the number of failures since the last line, and one line when
the task completes a run again.
"""
from __future__ import annotations

import select
import time
import traceback
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Iterator


class Priority(IntEnum):
    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, text: str | int | "Priority") -> "Priority":
        if isinstance(text, int):
            return cls(text)
        return cls[str(text).upper()]


ERROR_LOG_INTERVAL_S = 30.0   # at most one "task failed" line per task this often


class Failed(Exception):
    """Raised by a run that could not do its work: the run is a failure, the task lives on."""


class NotReady(Failed):
    """Raised by a run whose input is not there yet (a pool graph before the monitors' first
    snapshot): not an error.  The run is retried after `retry_after` seconds (at most its
    interval) instead of a whole interval later, which for an hourly task was an hour of
    nothing after every start; it is logged once, at info level, and shown in `status --tasks`
    as its last error with "not ready:" in front."""

    def __init__(self, why: str, retry_after: float = 5.0):
        super().__init__(why)
        self.retry_after = retry_after


@dataclass
class Wait:
    """Yielded by a task that waits: for a file descriptor (`fd`, `write`) and/or a time."""
    fd: int | None = None
    write: bool = False
    until: float | None = None      # time.monotonic() deadline


class Task:
    """Base class.  Subclasses set `name`, `priority`, `interval` and write `run(ctx)`."""

    name: str = "task"
    priority: Priority = Priority.MEDIUM
    interval: float = 60.0
    #: an optional task runs only where engine.toml asks for it (a `roles.<name>.tasks.<task>`
    #: table, or an engine-wide switch such as `[tasks] checksum`): engine.core.kind
    optional: bool = False
    #: its `options` (engine.toml: roles.<name>.tasks.<task>.options): name -> (type, default,
    #: doc), as RoleKind.OPTIONS; `self.options` starts from these defaults
    OPTIONS: dict[str, tuple] = {}

    def __init__(self, *, name: str | None = None, interval: float | None = None,
                 priority: str | Priority | None = None, options: dict | None = None):
        if name:
            self.name = name
        if interval is not None:
            self.interval = float(interval)
        if priority is not None:
            self.priority = Priority.parse(priority)
        self.options = {**{k: d[1] for k, d in self.OPTIONS.items()}, **(options or {})}
        self.state: Any = self.initial_state()

    def initial_state(self) -> Any:
        return {}

    def restore(self, state: Any) -> None:
        self.state = state

    def run(self, ctx: "TaskContext") -> Iterator[Wait | None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def prune(self) -> None:
        """Drop caches (called when the role sheds load at its soft memory limit)."""


class TaskContext:
    """What a running task may use: its role's name, options, discoveries and log."""

    def __init__(self, role: str, *, discover: Callable[[str, dict], None] | None = None,
                 log: Callable[..., None] | None = None, options: dict | None = None):
        self.role = role
        self.options = options or {}
        self._discover = discover
        self._log = log

    def discover(self, task: str, record: dict) -> None:
        if self._discover:
            self._discover(task, record)

    def log(self, msg: str, **fields) -> None:
        if self._log:
            self._log(msg, **fields)


@dataclass
class TaskStats:
    """A task's history: kept across restarts (it is saved in every checkpoint)."""
    runs: int = 0
    completed: int = 0
    errors: int = 0
    missed: int = 0
    busy_ns: int = 0
    run_ns_total: int = 0      # sum of completed runs' wall durations
    last_error: str = ""

    def as_dict(self) -> dict:
        return {"runs": self.runs, "completed": self.completed, "errors": self.errors,
                "missed_intervals": self.missed, "busy_ms": self.busy_ns / 1e6,
                "completion_rate": (self.completed / self.runs) if self.runs else None,
                "mean_run_ms": (self.run_ns_total / self.completed / 1e6) if self.completed else None,
                "last_error": self.last_error}

    @classmethod
    def from_dict(cls, d: dict) -> "TaskStats":
        """The inverse of `as_dict` (a checkpoint record; unknown keys are ignored)."""
        completed = int(d.get("completed", 0))
        mean = d.get("mean_run_ms")
        return cls(runs=int(d.get("runs", 0)), completed=completed,
                   errors=int(d.get("errors", 0)), missed=int(d.get("missed_intervals", 0)),
                   busy_ns=int(float(d.get("busy_ms") or 0) * 1e6),
                   run_ns_total=int(float(mean) * 1e6 * completed) if mean is not None else 0,
                   last_error=str(d.get("last_error") or ""))


@dataclass
class _Entry:
    task: Task
    enabled: bool = True
    next_due: float = 0.0                   # monotonic seconds
    gen: Iterator | None = None
    run_started: float = 0.0
    wait: Wait | None = None
    stats: TaskStats = field(default_factory=TaskStats)
    order: int = 0                          # round robin among equal priorities
    unlogged: int = 0                       # failures since the last log line about them
    quiet_until: float = float("-inf")      # no "failed" line before this (monotonic)
    failing: bool = False                   # the last run failed


class TaskManager:
    """Drives one role's tasks.  Single-threaded: the role loop calls `run_slice`."""

    def __init__(self, tasks: list[Task], ctx: TaskContext, *, max_concurrent: int = 5,
                 slice_budget_us: int = 200, clock: Callable[[], float] = time.monotonic,
                 clock_ns: Callable[[], int] = time.perf_counter_ns,
                 on_error: Callable[[Task, BaseException], None] | None = None,
                 log: Any = None, error_log_interval: float = ERROR_LOG_INTERVAL_S):
        """`on_error(task, exc)` is called on every failed run (the role counts it); `log` (an
        object with `error` and `info` methods taking a message and fields) gets the
        rate-limited lines about failures."""
        names = [t.name for t in tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate task names: {', '.join(sorted(dup))}")
        self.ctx = ctx
        self.max_concurrent = max_concurrent
        self.budget_ns = slice_budget_us * 1000
        self.clock, self.clock_ns = clock, clock_ns
        self.on_error = on_error
        self.log, self.error_log_interval = log, error_log_interval
        now = clock()
        self.entries: dict[str, _Entry] = {t.name: _Entry(t, next_due=now) for t in tasks}
        self.paused = False
        self.shedding = False
        self.overruns = 0
        self.slices = 0
        self.busy_ns = 0                    # all tasks' work, for the role's efficiency
        self._preempted: _Entry | None = None
        self.current: str = ""
        self._turn = 0

    # ------------------------------------------------------------------ operator controls
    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def run_soon(self, name: str) -> bool:
        """Make task `name` due now (news it acts on arrived: a switch may call this; the run
        itself is a later slice).  False if the role has no such task."""
        e = self.entries.get(name)
        if e is None:
            return False
        if e.gen is None:
            e.next_due = min(e.next_due, self.clock())
        return True

    def shed(self, on: bool = True) -> None:
        """Soft memory limit: stop LOW-priority work and drop caches; `shed(False)` undoes it."""
        if on and not self.shedding:
            for e in self.entries.values():
                e.task.prune()
        self.shedding = on

    def _eligible(self, e: _Entry) -> bool:
        return e.enabled and not (self.shedding and e.task.priority == Priority.LOW)

    # ------------------------------------------------------------------ state for checkpoints
    def slim_states(self) -> dict[str, dict]:
        """Just what resuming needs (state, mid-run or not): the switch stages this, cheaply."""
        return {name: {"state": e.task.state, "in_run": e.gen is not None}
                for name, e in self.entries.items()}

    def states(self) -> dict[str, dict]:
        """Every task's state and history, taken at a safe point (between slices)."""
        wall, mono = time.time(), self.clock()
        return {name: {"state": e.task.state, "in_run": e.gen is not None,
                       "next_due": wall + (e.next_due - mono), "priority": e.task.priority.name,
                       "interval": e.task.interval, **e.stats.as_dict()}
                for name, e in self.entries.items()}

    def restore(self, saved: dict[str, dict]) -> list[str]:
        """Restore from a checkpoint.  Tasks that were mid-run start again at once, from their
        saved state; the others keep their schedule.  Returns the names restored."""
        wall, mono = time.time(), self.clock()
        restored = []
        for name, rec in (saved or {}).items():
            e = self.entries.get(name)
            if e is None or not isinstance(rec, dict):
                continue
            e.task.restore(rec.get("state"))
            e.next_due = mono if rec.get("in_run") else mono + max(
                0.0, min(float(rec.get("next_due", wall)) - wall, e.task.interval))
            restored.append(name)
            if "runs" not in rec:
                continue   # a slim (staged) state: the history stays as it was
            e.stats = TaskStats.from_dict(rec)   # the history carries over restarts
            if rec.get("in_run"):   # that run starts again at once and counts itself once more
                e.stats.runs -= 1
        return restored

    # ------------------------------------------------------------------ scheduling
    def _start_due(self, now: float) -> None:
        active = sum(1 for e in self.entries.values() if e.gen is not None)
        if active >= self.max_concurrent:
            return
        due = [e for e in self.entries.values()
               if e.gen is None and self._eligible(e) and e.next_due <= now]
        due.sort(key=lambda e: (-e.task.priority, e.next_due))
        for e in due[: self.max_concurrent - active]:
            e.gen = e.task.run(self.ctx)
            e.run_started = now
            e.wait = None
            e.stats.runs += 1

    def _poll_waits(self, now: float) -> None:
        rd, wr = [], []
        for e in self.entries.values():
            w = e.wait
            if w is None:
                continue
            if w.fd is None:
                if w.until is not None and now >= w.until:
                    e.wait = None
            elif w.until is not None and now >= w.until:
                e.wait = None                       # the task sees the timeout itself
            else:
                (wr if w.write else rd).append(w.fd)
        if rd or wr:
            try:
                r, w_, x = select.select(rd, wr, rd + wr, 0)
            except (OSError, ValueError):
                r, w_, x = rd, wr, []              # let the task find the bad fd itself
            ready = set(r) | set(w_) | set(x)
            for e in self.entries.values():
                if e.wait is not None and e.wait.fd in ready:
                    e.wait = None

    def _pick(self) -> _Entry | None:
        p, self._preempted = self._preempted, None
        if p is not None and p.gen is not None and p.wait is None and self._eligible(p):
            return p  # resume exactly the task an interrupt stopped
        best, best_key = None, None
        for e in self.entries.values():
            if e.gen is None or e.wait is not None or not self._eligible(e):
                continue
            key = (e.task.priority, -e.order)
            if best_key is None or key > best_key:
                best, best_key = e, key
        return best

    def run_slice(self, interrupt: list) -> bool:
        """Run background work for one slice, stopping at the first safe point after the
        budget is spent or as soon as `interrupt[0]` becomes true.  Returns True if any task
        work was done (the role counts that time as 'due')."""
        if self.paused:
            return False
        now = self.clock()
        self._start_due(now)
        self._poll_waits(now)
        e = self._pick()
        if e is None:
            return False
        self._turn += 1
        e.order = self._turn
        self.current = e.task.name
        self.slices += 1
        clock_ns = self.clock_ns
        t0 = clock_ns()
        deadline = t0 + self.budget_ns
        gen = e.gen
        step_start = t0
        try:
            while True:
                y = next(gen)
                t = clock_ns()
                if t - step_start > self.budget_ns:
                    self.overruns += 1
                step_start = t
                if y is not None:
                    e.wait = y
                    break
                if interrupt[0]:
                    self._preempted = e
                    break
                if t >= deadline:
                    break
        except StopIteration:
            end = self.clock()
            e.gen = None
            e.stats.completed += 1
            e.stats.run_ns_total += int((end - e.run_started) * 1e9)
            self._schedule_next(e, end)
            if e.stats.last_error.startswith("not ready:"):
                e.stats.last_error = ""
            if e.failing:
                self._recovered(e)
        except Exception as exc:  # Failed, or a task's bug: neither may take the role down
            self._failed(e, exc)
        spent = clock_ns() - t0
        e.stats.busy_ns += spent
        self.busy_ns += spent
        return True

    def _failed(self, e: _Entry, exc: Exception) -> None:
        now = self.clock()
        e.gen = None
        if isinstance(exc, NotReady):
            e.next_due = now + max(0.0, min(e.task.interval, exc.retry_after))
            if not e.stats.last_error.startswith("not ready:") and self.log is not None:
                self.log.info("background task waiting for its input", task=e.task.name,
                              why=str(exc), retry_s=round(e.next_due - now, 3))
            e.stats.last_error = f"not ready: {exc}"
            e.stats.runs -= 1               # neither a run nor an error: the completion rate holds
            return
        e.stats.errors += 1
        e.stats.last_error = str(exc) if isinstance(exc, Failed) else \
            "".join(traceback.format_exception_only(type(exc), exc)).strip()
        e.next_due = now + e.task.interval
        e.failing = True
        e.unlogged += 1
        if self.on_error:
            self.on_error(e.task, exc)
        if self.log is not None and now >= e.quiet_until:
            self.log.error("background task failed", task=e.task.name, error=e.stats.last_error,
                           failures=e.unlogged, errors=e.stats.errors)
            e.unlogged = 0
            e.quiet_until = now + self.error_log_interval

    def _recovered(self, e: _Entry) -> None:
        e.failing = False
        if self.log is not None:
            self.log.info("background task recovered: a run completed again", task=e.task.name,
                          failures=e.unlogged, errors=e.stats.errors)
        e.unlogged = 0
        e.quiet_until = float("-inf")

    def _schedule_next(self, e: _Entry, end: float) -> None:
        if e.task.interval <= 0:   # continuous: the next run starts at once
            e.next_due = end
            return
        nxt = e.run_started + e.task.interval
        if end > nxt:  # the run took longer than its interval: those starts were missed
            missed = int((end - nxt) // e.task.interval) + 1
            e.stats.missed += missed
            nxt += missed * e.task.interval
        e.next_due = nxt

    def next_wakeup(self) -> tuple[float | None, list[int], list[int]]:
        """(seconds until something is due or None, fds to read, fds to write) for an idle
        role to sleep on."""
        if self.paused:
            return None, [], []
        now = self.clock()
        times, rd, wr = [], [], []
        active = sum(1 for e in self.entries.values() if e.gen is not None)
        for e in self.entries.values():
            if not self._eligible(e):
                continue
            if e.gen is not None:
                if e.wait is None:
                    return 0.0, [], []
                if e.wait.until is not None:
                    times.append(e.wait.until)
                if e.wait.fd is not None:
                    (wr if e.wait.write else rd).append(e.wait.fd)
            elif active < self.max_concurrent:
                times.append(e.next_due)
        t = max(0.0, min(times) - now) if times else None
        return t, rd, wr

    def has_runnable(self) -> bool:
        t, _, _ = self.next_wakeup()
        return t == 0.0

    def statistics(self) -> dict:
        return {"paused": self.paused, "shedding": self.shedding, "slices": self.slices,
                "overruns": self.overruns,
                "tasks": {n: {"priority": e.task.priority.name.lower(),
                              "interval": e.task.interval, "running": e.gen is not None,
                              "waiting": e.wait is not None, **e.stats.as_dict()}
                          for n, e in self.entries.items()}}
