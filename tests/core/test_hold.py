"""A kind's hold after a switch (engine/core/kind.py, hold_for_kind): the role's main thread
waits, boosted and off the GIL, until the kind's own thread says it is done, an interrupt or
an operator's signal comes, or the limit passes.  Real pipes, a real signal and its wake-up fd."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from engine.core.kind import hold_for_kind


class _Kind:
    def __init__(self, limit: float):
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.limit = limit
        self.asked = 0

    def hold(self):
        self.asked += 1
        return self.r, self.limit

    def close(self):
        os.close(self.r)
        os.close(self.w)


@pytest.fixture
def wake():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield r, w
    os.close(r)
    os.close(w)


def _later(s: float, fn):
    t = threading.Timer(s, fn)
    t.start()
    return t


def test_it_waits_for_the_kind_even_with_the_switchs_own_signal_in_the_pipe(wake):
    """The signal that started the switch left a byte in the wake-up pipe: the hold must not
    end on it (it is emptied first), only when the kind's fd becomes readable."""
    r, w = wake
    os.write(w, b"\x0a")
    kind = _Kind(limit=10.0)
    try:
        t = _later(0.2, lambda: os.write(kind.w, b"d"))
        t0 = time.monotonic()
        held = hold_for_kind(kind, r, lambda: False)
        took = time.monotonic() - t0
        t.join()
    finally:
        kind.close()
    assert 0.15 <= took < 8.0, took
    assert abs(held / 1e9 - took) < 0.05


def test_an_interrupt_during_the_hold_ends_it_at_once(wake):
    """A real signal, through signal.set_wakeup_fd as the role installs it."""
    r, w = wake
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    kind = _Kind(limit=10.0)
    try:
        t = _later(0.2, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        t0 = time.monotonic()
        hold_for_kind(kind, r, lambda: bool(seen))
        took = time.monotonic() - t0
        t.join()
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, old)
        kind.close()
    assert seen and 0.15 <= took < 8.0, took


def test_no_wait_when_something_is_pending_or_the_kind_does_not_ask(wake):
    r, _ = wake
    kind = _Kind(limit=10.0)
    try:
        t0 = time.monotonic()
        assert hold_for_kind(kind, r, lambda: True) < 1e9      # an interrupt already came
        assert kind.asked == 1
        assert time.monotonic() - t0 < 5.0
    finally:
        kind.close()

    class Plain:
        def hold(self):
            return None
    assert hold_for_kind(Plain(), r, lambda: False) == 0
    assert hold_for_kind(None, r, lambda: False) == 0


def test_the_limit_ends_a_hold_whose_thread_never_answers(wake):
    r, _ = wake
    kind = _Kind(limit=0.2)
    try:
        t0 = time.monotonic()
        hold_for_kind(kind, r, lambda: False)
        took = time.monotonic() - t0
    finally:
        kind.close()
    assert 0.15 <= took < 8.0, took
