"""The executor's sending thread: every node round trip of the trading path, out of the switch.

    role's switch (main thread)            sending thread (this module)
    Desk.accept(record) ── Job ──► queue ──► Desk.carry(job): head, fees, eth_call, nonce,
        "queued" on the ledger                 sign, "signed" (committed), submit, "sent"
                                           every receipt_poll s: Desk.poll_receipts()
                                           idle: Desk.refresh_heads() (a send finds its
                                           chain's head fresh: one round trip less)
    ReceiptTask / handle ◄── drain() ◄──── outcome records (published by the main thread:
                                           the outbox ring has one writer)

Why a thread and not a background task: a task's slice cannot be cut short inside a blocking
JSON-RPC call, so every interrupt that came during one (up to `request_timeout`) waited for it;
a thread blocked on a socket holds no GIL and the switch runs at once.  Its Python work
(encoding, signing: ~0.5 ms) can hold the GIL against the switch for one switch interval, so
the executor lowers that interval to SWITCH_INTERVAL_S.  One thread only: nonces are handed
out in order without a lock, and sends never overtake each other.

Scheduling: the thread is created by the role's main thread in the background class (nice 10,
per thread on Linux), where a loaded machine left it waiting for a CPU: record → sent p50 36 ms
against 19 ms in the boosted switch (bench e2e, load 8).  So while it carries a job it runs
at the switch's SCHED_FIFO priority (`priority`, when the engine may boost): put() raises it
before it wakes it, and it drops back to SCHED_OTHER when its queue is empty; it blocks on
sockets most of that time.  The role's main thread waits for it after the switch
(RoleKind.hold), so it never waits for the GIL behind a descheduled nice-10 thread.

SIGKILL safety is the Desk's: nothing is sent before its "signed" record is committed, and a
restart looks every open hash up (engine/chain/tracker.py) — the thread changes nothing there.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque

from engine.core.signals import drain

SWITCH_INTERVAL_S = 0.0005
_STOP = object()


class Sender:
    def __init__(self, desk, *, poll_s: float = 0.2, log=None, name: str = "executor-sender",
                 priority: int | None = None, fresh_heads: bool = True):
        self.desk, self.poll_s, self.log, self.name = desk, poll_s, log, name
        self.fresh_heads = fresh_heads
        self.priority = priority
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: deque[dict] = deque()
        self.thread: threading.Thread | None = None
        self.carried = self.failures = 0
        self.last_error = ""
        self.busy_since = 0.0           # monotonic s when the current job started (0: idle)
        self.doing = "idle"             # what the thread is doing: idle, send, receipts, heads
        self.put_n = 0                  # jobs handed over (main thread); `carried`: finished
        self._done_r = self._done_w = -1    # a byte when the last job handed over is finished

    def start(self) -> None:
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._done_r, self._done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def put(self, job) -> None:
        """Hand a job over (the switch): the thread is raised to the switch's priority first,
        so it is woken as a real-time thread (on the other CPU at once, if that one runs only
        SCHED_OTHER work) rather than waiting for a CPU at nice 10 behind the node and the
        traffic; it is lowered again when its queue is empty."""
        job.behind = self.doing
        self.put_n += 1
        if self.thread is not None and self.thread.native_id is not None:
            self._boost(True, self.thread.native_id)
        self.jobs.put(job)

    def drain(self) -> list[dict]:
        """The outcome records finished since the last call (main thread)."""
        out = []
        while self.done:
            out.append(self.done.popleft())
        return out

    def depth(self) -> int:
        return self.jobs.qsize()

    def hold_fd(self) -> int | None:
        """While a job handed over is not finished: the fd that becomes readable when it is
        (the main thread waits on it after its switch: RoleKind.hold); None when idle."""
        if self._done_r < 0 or self.put_n == self.carried:   # idle: no syscall in the switch
            return None
        drain(self._done_r)    # a byte of an earlier job; looked at again after it is emptied
        return self._done_r if self.put_n != self.carried else None

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the job in hand (never cut a send in half), then end; queued jobs stay
        "queued" on the ledger (a restart records them dropped)."""
        if self.thread is None:
            return
        self.jobs.put(_STOP)
        self.thread.join(timeout)
        alive, self.thread = self.thread.is_alive(), None
        if not alive:          # a thread stuck in a call may still write its byte: keep them
            for fd in (self._done_r, self._done_w):
                os.close(fd)
            self._done_r = self._done_w = -1

    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_s
        next_head = 0.0
        while True:
            now = time.monotonic()
            if not self.fresh_heads:
                next_head = next_poll
            elif now >= next_head and self.jobs.empty():    # idle: keep the heads fresh
                self.doing = "heads"
                next_head = time.monotonic() + self.desk.refresh_heads()
            self.doing = "idle"
            try:
                job = self.jobs.get(timeout=max(0.0, min(next_poll, next_head) - time.monotonic()))
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            if job is not None:
                self.doing = "send"
                self.busy_since = time.monotonic()
                self._boost(True)
                if not self._safe(self.desk.carry, job):
                    self._safe(self.desk.failed, job)
                if self.jobs.empty():
                    self._boost(False)
                self.busy_since = 0.0
                self.carried += 1
                if self.carried == self.put_n:
                    try:
                        os.write(self._done_w, b"d")
                    except (BlockingIOError, OSError):
                        pass
                if not self.jobs.empty():
                    continue          # sends first; receipts when the queue is empty
            if time.monotonic() >= next_poll:
                self.doing = "receipts"
                self._safe(self.desk.poll_receipts, self._send_waiting)
                next_poll = time.monotonic() + self.poll_s

    def _send_waiting(self) -> bool:
        return not self.jobs.empty()

    def _boost(self, on: bool, tid: int = 0) -> None:
        """The sending thread's policy: sched_setscheduler is per thread on Linux (tid 0: the
        calling thread, which is the sending thread unless put() passes its kernel id)."""
        if self.priority is None:
            return
        try:
            if on:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.priority))
            else:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            self.priority = None      # not allowed here: stay where we are

    def _safe(self, fn, *args) -> bool:
        """Never let the thread die on bad data from a node or a sender."""
        try:
            out = fn(*args)
        except Exception as e:
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"[:300]
            if self.log is not None:
                self.log.error("executor sending thread failed", step=getattr(fn, "__name__", "?"),
                               error=self.last_error)
            return False
        if isinstance(out, dict):
            self.done.append(out)
        elif out:
            self.done.extend(out)
        return True
