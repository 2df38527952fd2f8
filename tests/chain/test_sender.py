"""The executor's sending thread (engine/chain/sender.py) without a node: a desk whose carry
blocks until the test lets it go.  Real threads, real pipes, the real scheduler."""
from __future__ import annotations

import os
import select
import threading

import pytest

from engine.chain.sender import Sender
from engine.core.signals import can_boost


class _Desk:
    def __init__(self):
        self.go = threading.Event()
        self.carried = []

    def refresh_heads(self) -> float:
        return 1.0

    def poll_receipts(self, yield_to=None):
        return []

    def carry(self, job):
        self.go.wait(30)
        self.carried.append(job)
        return {"key": job.key, "state": "sent"}

    def failed(self, job):
        return {"key": job.key, "state": "refused"}


class _Job:
    behind = ""

    def __init__(self, key: str):
        self.key = key


def test_the_hold_fd_is_readable_once_every_job_handed_over_is_finished():
    desk = _Desk()
    s = Sender(desk, poll_s=0.05)
    s.start()
    try:
        assert s.hold_fd() is None                        # idle: nothing to wait for
        s.put(_Job("a"))
        s.put(_Job("b"))
        fd = s.hold_fd()
        assert fd is not None and not select.select([fd], [], [], 0.2)[0]
        desk.go.set()
        assert select.select([fd], [], [], 10.0)[0]
        assert [j.key for j in desk.carried] == ["a", "b"] and s.hold_fd() is None
        assert [r["key"] for r in s.drain()] == ["a", "b"]
    finally:
        desk.go.set()
        s.stop()
    assert s.hold_fd() is None and s._done_r == -1        # its pipe is closed with it


@pytest.mark.skipif(not can_boost(1), reason="SCHED_FIFO is not permitted here (root or "
                                             "RLIMIT_RTPRIO): the boost cannot be observed")
def test_a_job_handed_over_raises_the_waiting_thread_before_it_wakes():
    """put() raises the sending thread to the switch's FIFO priority itself, so the thread is
    woken as a real-time one rather than at nice 10 behind the node (a stand-in thread that
    never takes the job shows it is put() and not the thread)."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, args=(30,), daemon=True)
    t.start()
    s = Sender(_Desk(), priority=1)
    s.thread = t
    try:
        assert os.sched_getscheduler(t.native_id) != os.SCHED_FIFO
        s.put(_Job("a"))
        assert os.sched_getscheduler(t.native_id) == os.SCHED_FIFO
        assert os.sched_getparam(t.native_id).sched_priority == 1
    finally:
        stop.set()
        t.join()
