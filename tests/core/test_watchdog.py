"""The watchdog's decisions, driven without processes: a fake probe (memory, CPU), a fake
clock and a recording kill, on a real control block.  Its real-process behaviour is in
test_watchdog_and_kills.py and test_shed.py."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest

from engine.core.control import ControlBlock, F, Flag
from engine.core.signals import SIG_CHECKPOINT, SIG_MEMORY_SHED, SIG_MEMORY_UNSHED
from engine.core.watchdog import Watchdog
from fakes import Clock

MiB = 1 << 20
CFG = {"interval_ms": 50, "heartbeat_timeout": 10.0, "abort_grace": 2.0}


@dataclass
class Kid:
    role: str
    pid: int
    started: float
    slot: int


@pytest.fixture
def rig(unique_name):
    cb = ControlBlock.create(unique_name, 4, os.getpid())
    clock, sent, events, memory = Clock(), [], [], {}
    kids = {101: Kid("a", 101, clock.t, 0)}
    cb.slot(0).reset("a")
    wd = Watchdog(CFG, control=cb, children=lambda: list(kids.values()),
                  limits=lambda role: (100 * MiB, 200 * MiB) if role == "a" else None,
                  event=lambda kind, **f: events.append(kind),
                  kill=lambda pid, sig: sent.append(sig), clock=clock, clock_ns=clock.ns,
                  probe=lambda pid: (memory[pid], None) if pid in memory else None)
    try:
        yield wd, cb.slot(0), clock, sent, events, memory, kids
    finally:
        cb.close()
        ControlBlock.unlink(unique_name)


def test_soft_limit_sheds_and_lifts_only_its_own_shed(rig):
    wd, slot, clock, sent, events, memory, _ = rig
    memory[101] = 150 * MiB
    wd.tick()
    assert sent == [SIG_MEMORY_SHED] and events == ["watchdog_memory_soft"]
    assert slot.get(F.MEM_PRIVATE) == 150 * MiB
    slot.set(F.FLAGS, Flag.SHEDDING | Flag.SHED_BY_MEMORY)     # the role took it
    wd.tick()
    assert sent == [SIG_MEMORY_SHED]                           # not sent again
    memory[101] = 70 * MiB                                     # under 80 % of soft
    wd.tick()
    assert sent == [SIG_MEMORY_SHED, SIG_MEMORY_UNSHED]


def test_an_operator_shed_is_not_lifted_by_the_watchdog(rig):
    wd, slot, clock, sent, events, memory, _ = rig
    memory[101] = 10 * MiB
    slot.set(F.FLAGS, Flag.SHEDDING | Flag.SHED_BY_OPERATOR)
    for _ in range(5):
        wd.tick()
        clock.advance(0.05)
    assert sent == [] and events == []


def test_hard_limit_checkpoints_stops_then_kills_after_the_grace(rig):
    wd, slot, clock, sent, events, memory, _ = rig
    memory[101] = 300 * MiB
    wd.tick()
    assert sent == [SIG_CHECKPOINT, signal.SIGTERM] and wd.was_acted(101)
    clock.advance(1.0)
    wd.tick()
    assert sent == [SIG_CHECKPOINT, signal.SIGTERM]            # still within the grace
    clock.advance(1.5)
    wd.tick()
    assert sent[-1] == signal.SIGKILL and events[-1] == "watchdog_kill"
    assert slot.get(F.WATCHDOG_ACTIONS) == 2


def test_a_silent_heartbeat_gets_abrt(rig):
    wd, slot, clock, sent, events, memory, _ = rig
    memory[101] = 10 * MiB
    slot.set(F.HEARTBEAT_NS, clock.ns())
    clock.advance(5.0)
    wd.tick()
    assert sent == []
    clock.advance(6.0)                                         # 11 s silent, timeout 10 s
    wd.tick()
    assert sent == [signal.SIGABRT] and events == ["watchdog_stalled"]


def test_gone_or_retired_children_are_skipped(rig):
    wd, slot, clock, sent, events, memory, kids = rig
    kids[102] = Kid("removed-by-reload", 102, clock.t, 1)
    memory[102] = 999 * MiB
    wd.tick()                     # 101 has no /proc entry (probe None), 102 has no limits
    assert sent == [] and events == []
