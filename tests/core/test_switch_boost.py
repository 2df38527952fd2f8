"""A switch that ends while another interrupt is on its way keeps that interrupt's boost.

A sender stores SENT_NS, boosts the role to FIFO, then signals it.  A boost that lands while
the role is still switching used to be undone by the role's lowering itself at the end of that
switch, and the signal then waited for a nice-10 process (the executor's tail: 27 of its 31
switches over 1 ms in `bench switch`).  RoleRuntime._lower looks for a newer SENT_NS (or the
flag) before lowering, and again after (Background.lower_unless).  Real scheduler calls, in a
forked child."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from engine.core.control import F, ControlBlock
from engine.core.role import RoleRuntime
from engine.core.signals import Background, boost


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def fifo() -> bool:
    return os.sched_getscheduler(0) == os.SCHED_FIFO


def test_a_boost_undone_by_the_lowering_is_taken_back(unique_name):
    cb = ControlBlock.create(unique_name, 1, os.getpid())
    try:
        slot = cb.slot(0)

        def child() -> int:
            bg = Background("nice", 10)
            bg.enter()
            if not boost(0, 10):
                return 77                       # no permission for SCHED_FIFO: skip
            rt = SimpleNamespace(bg=bg, wiring=SimpleNamespace(role_boost_priority=10),
                                 interrupt=[False], slot=slot, reboosts=0)
            out = 0
            slot.set(F.SENT_NS, 1000)
            RoleRuntime._lower(rt, 1000)        # nothing new: background priority
            out |= 1 if not fifo() else 0
            boost(0, 10)                        # a sender: SENT_NS, boost (its signal later)
            slot.set(F.SENT_NS, 2000)
            RoleRuntime._lower(rt, 1000)        # seen before lowering: stays boosted
            out |= 2 if fifo() and rt.reboosts == 1 else 0
            rt.interrupt[0] = True              # its signal came during the switch
            RoleRuntime._lower(rt, 2000)
            out |= 4 if fifo() and rt.reboosts == 2 else 0
            # a boost that lands between the first look and the lowering: the second look
            looks = []
            kept = bg.lower_unless(lambda: looks.append(1) or len(looks) > 1, 10)
            out |= 8 if kept and fifo() else 0
            bg.lower()
            out |= 16 if not bg.lower_unless(lambda: True, None) and not fifo() else 0
            return out

        code = _in_child(child)
        if code == 77:
            pytest.skip("no permission for SCHED_FIFO")
        assert code == 31, f"checks passed: {code:05b} (1 lowered, 2 newer SENT_NS, 4 flag, " \
                           "8 boosted back after lowering, 16 no boost configured)"
    finally:
        cb.close()
        ControlBlock.unlink(unique_name)
