"""The agents' decision records reach LMDB between switches without a step the interrupt would
wait for: inline commits only, in chunks of FLUSH_CHUNK, and never a job left to the store's
writer thread while the writer lock is busy (that thread, at the role's nice 10, held the GIL
mid-job while the boosted main thread waited: DEVELOPING.md, "the atomic switch")."""
from __future__ import annotations

import fcntl
import os

from engine.core.store import Store
from engine.core.store.writer import WRITER_LOCK
from roles import pricing


def rec(i):
    return {"kind": "opportunity", "role": "spot", "event": f"e{i}", "approved": False,
            "code": "below-threshold", "reason": "r", "confidence": 0.0, "net": None}


def events(store):
    with store.read() as r:
        return [rec["event"] for _, rec in r.records("opportunities", "spot")]


def book_with(n):
    b = pricing.DecisionBook(None, 20)
    for i in range(n):
        b.add(rec(i), {}, log=False)
    return b


def test_each_step_commits_at_most_one_chunk(tmp_path):
    with Store.open(tmp_path / "s") as store:
        b = book_with(3 * pricing.FLUSH_CHUNK + 1)
        written = []
        for _ in b.background_steps(store, "spot"):
            written.append(b.written)
        steps = [y - x for x, y in zip([0] + written, written)]
        assert max(steps) <= pricing.FLUSH_CHUNK and b.written == 3 * pricing.FLUSH_CHUNK + 1
        assert events(store) == [f"e{i}" for i in range(3 * pricing.FLUSH_CHUNK + 1)]
        assert store.statistics().jobs == 0         # every commit inline, none by the writer


def test_a_busy_writer_lock_leaves_the_records_pending_not_queued(tmp_path):
    with Store.open(tmp_path / "s") as store:
        fd = os.open(tmp_path / "s" / WRITER_LOCK, os.O_RDWR)   # another writer holds it
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            b = book_with(5)
            for _ in range(pricing.QUEUE_AFTER - 1):
                list(b.background_steps(store, "spot"))
            assert b.written == 0 and len(b.pending) == 5 and b.write_errors == 0
            assert store.statistics().queued_jobs == 0 and store.statistics().jobs == 0
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        list(b.background_steps(store, "spot"))    # free again: written inline, in order
        assert b.written == 5 and not b.pending
        assert events(store) == [f"e{i}" for i in range(5)]


def test_a_lock_busy_for_long_hands_the_records_to_the_writer(tmp_path):
    with Store.open(tmp_path / "s") as store:
        fd = os.open(tmp_path / "s" / WRITER_LOCK, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            b = book_with(2)
            for _ in range(pricing.QUEUE_AFTER + 1):
                list(b.background_steps(store, "spot"))
            assert not b.pending and b.written == 2     # queued: the store must not fall behind
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        assert store.flush(10)
        assert events(store) == ["e0", "e1"]
