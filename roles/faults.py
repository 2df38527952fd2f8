"""Fault injection: roles that misbehave on purpose, for tests and fire drills.

    roles.faults:FaultAgent   an Agent plus, as its options ask:
        discover = true        a task that counts and records every count as a discovery
                               (state and discoveries must agree after any crash)
        leak_mib_per_s = N     a task that leaks N MiB of private memory a second
        stall_after_s = S      a task that, S seconds after start, enters a C call that never
        stall_flag = PATH      returns to the interpreter (only once: PATH marks that it did)
        oversize_every = N     every N-th decision is padded past the outbox's slot size
        crash_flag = PATH      the first switch's handling SIGKILLs the role (once: PATH marks
                               that it did), a switch that never finishes

Nothing here runs unless engine.toml names this kind.
"""
from __future__ import annotations

import os
import signal
import time

from engine.core.tasks import Priority, Task, Wait

from .agents import Agent


class Counting(Task):
    name = "discover"
    priority = Priority.MEDIUM
    interval = 0.0

    def initial_state(self):
        return {"k": 0}

    def run(self, ctx):
        for _ in range(50):
            self.state["k"] += 1
            ctx.discover(self.name, {"k": self.state["k"]})
            yield None
        yield Wait(until=time.monotonic() + 0.005)


class Leak(Task):
    name = "leak"
    priority = Priority.HIGH      # not shed at the soft limit: a real leak does not stop
    interval = 0.0

    def __init__(self, mib_per_s: float, **kw):
        super().__init__(**kw)
        self.rate = mib_per_s
        self.hoard: list[bytearray] = []

    def run(self, ctx):
        chunk = bytearray(os.urandom(64) * (1 << 14))      # 1 MiB, touched
        self.hoard.append(chunk)
        yield Wait(until=time.monotonic() + 1.0 / self.rate)


class Stall(Task):
    name = "stall"
    priority = Priority.HIGH
    interval = 0.0

    def __init__(self, after: float, flag: str | None, **kw):
        super().__init__(**kw)
        self.at = time.monotonic() + after
        self.flag = flag

    def run(self, ctx):
        yield Wait(until=self.at)
        if self.flag:
            if os.path.exists(self.flag):
                while True:
                    yield Wait(until=time.monotonic() + 3600)
            open(self.flag, "w").close()
        sum(range(10**13))   # one C call: no bytecode runs, no signal handler, no heartbeat
        yield None


class FaultAgent(Agent):
    OPTIONS = {**Agent.OPTIONS,
               "discover": (bool, False, "run the counting task that records discoveries"),
               "leak_mib_per_s": (float, None, "run a task leaking this many MiB a second"),
               "stall_after_s": (float, None, "stall in a C call this long after start"),
               "stall_flag": (str, None, "a file marking that the stall happened (once)"),
               "oversize_every": (int, None, "pad every N-th decision past the slot size"),
               "crash_flag": (str, None, "SIGKILL itself in its first switch's handling, "
                                         "once (this file marks that it did)")}
    TASKS = {**Agent.TASKS, "discover": Counting, "leak": Leak, "stall": Stall}

    def tasks(self):
        ts = super().tasks()
        o = self.options
        if o.get("discover"):
            ts.append(Counting())
        if o.get("leak_mib_per_s"):
            ts.append(Leak(float(o["leak_mib_per_s"])))
        if o.get("stall_after_s") is not None:
            ts.append(Stall(float(o["stall_after_s"]), o.get("stall_flag")))
        return ts

    def handle(self, events):
        flag = self.options.get("crash_flag")
        if flag and not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        out = super().handle(events)
        n = self.options.get("oversize_every")
        if n:
            for d in out:
                self._decided = getattr(self, "_decided", 0) + 1
                if self._decided % n == 0:
                    d["padding"] = "x" * (1 << 16)   # larger than any slot
        return out
