"""The sending half of the atomic switch: publish an event, then interrupt whoever must see it.

    monitor (FIFO 20)                      role (background, nice 10)
    ─────────────────                      ──────────────────────────
    ring.publish(event, t_written) ──────► EVENT ring slot
    for each subscriber:
        slot.SENT_NS = now
        sched_setscheduler(pid, FIFO 10) ─► preempts background work on some core at once
        kill(pid, SIGRTMIN) ─────────────► handler: t_seen, flag = True   (role.py takes it
                                           from there: pause at the next safe point, save,
                                           handle, write the decision, lower itself, resume)

Order matters: boost first, then signal, so the handler runs as soon as the signal lands, and
the sender runs at a higher FIFO priority than the roles it boosts so it is never preempted
half-way through its list (see engine/core/signals.py for the measurements behind this).
A burst of records is published first and signalled once: the role drains the ring in one switch.
"""
from __future__ import annotations

import os
import time

import orjson

from .control import ControlBlock, F
from .frame import stamped
from .ring import Ring
from .signals import SIG_INTERRUPT, boost


class Interrupter:
    """Boosts and signals a fixed set of roles (their control-block slots)."""

    def __init__(self, control: ControlBlock, slots: list[int], *, boost_priority: int | None):
        self.slots = [control.slot(i) for i in slots]
        self.priority = boost_priority
        self.sent = 0
        self.failed = 0

    def notify(self) -> int:
        n = 0
        for slot in self.slots:
            pid = slot.get(F.PID)
            if not pid:
                continue
            slot.set(F.SENT_NS, time.monotonic_ns())
            if self.priority is not None:
                boost(pid, self.priority)
            try:
                os.kill(pid, SIG_INTERRUPT)
                n += 1
            except ProcessLookupError:
                self.failed += 1  # died between reading its pid and now: it resumes from the ring
        self.sent += n
        return n


class EventPublisher:
    """One ring, written by one process, and the roles to interrupt when it has news."""

    def __init__(self, ring: Ring, interrupter: Interrupter | None):
        self.ring = ring
        self.interrupter = interrupter

    def publish(self, event: dict, *, notify: bool = True) -> int:
        """Stamp `t_written` (when this record entered this ring), write, interrupt (unless
        `notify` is false: the readers take it at their next switch or poll)."""
        event["t_written"] = time.monotonic_ns()
        seq = self.ring.publish(orjson.dumps(event))
        if notify and self.interrupter:
            self.interrupter.notify()
        return seq

    def publish_many(self, events: list[dict], *, notify: bool = True) -> int:
        now = time.monotonic_ns()
        for e in events:
            e["t_written"] = now
        return self._write([orjson.dumps(e) for e in events], notify)

    def publish_encoded(self, records: list, *, notify: bool = True) -> int:
        """Publish records already encoded (a hot-path codec's tagged binary records, see
        engine/core/frame.py, or JSON objects), each stamped with `t_written` now; interrupt
        the subscribers unless `notify` is False (a record that must reach every replica but
        interrupts nobody).  Returns the seq of the last record."""
        now = time.monotonic_ns()
        return self._write([stamped(r, now) for r in records], notify)

    def _write(self, raw: list, notify: bool = True) -> int:
        seq = self.ring.publish_many(raw)
        if notify and self.interrupter:
            self.interrupter.notify()
        return seq
