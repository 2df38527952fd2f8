"""The receiver's group commit (roles/groupcommit.py) on a real LMDB store: one transaction per
turn of the loop, durable before add() returns, a failed commit or fsync failing its whole
batch and nothing else, and a commit that waits for another process's writer lock."""
from __future__ import annotations

import asyncio
import fcntl
import os
import threading

import pytest

from engine.core.store import Store, StoreError
from engine.core.store.writer import WRITER_LOCK
from roles.groupcommit import GroupCommit

PREFIX = "moralis"


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "lmdb", map_size=1 << 20)
    yield s
    s.close()


def inbox(store) -> list[tuple[int, dict]]:
    with store.read() as r:
        return list(r.records("inbox", PREFIX))


def run(store, body):
    """body(gc) in a fresh event loop; the GroupCommit closed after, its thread gone."""
    async def main():
        gc = GroupCommit(store, PREFIX, asyncio.get_running_loop())
        try:
            return gc, await body(gc)
        finally:
            gc.close()
    gc, out = asyncio.run(main())
    assert not gc._thread.is_alive()
    return gc, out


def test_one_turn_is_one_transaction_with_consecutive_seqs(store):
    async def body(gc):
        return await asyncio.gather(*[gc.add({"i": i}) for i in range(10)])
    gc, seqs = run(store, body)
    assert seqs == list(range(1, 11))
    assert gc.commits == 1 and gc.syncs == 1
    f = gc.fsync_stats()
    assert f["fsyncs"] == 1 and f["deliveries_per_fsync"] == 10 and 0 < f["p50_s"] == f["max_s"]
    assert [(s, r["i"]) for s, r in inbox(store)] == [(i + 1, i) for i in range(10)]


def test_batches_that_commit_while_an_fsync_runs_share_the_next_one(store):
    """Adds spread over many turns: every one is durable when it returns, and there are never
    more fsyncs than commits (each fsync covers every batch committed before it began)."""
    async def body(gc):
        async def one(i):
            await asyncio.sleep((i % 7) * 0.0003)
            return await gc.add({"i": i})
        return await asyncio.gather(*[one(i) for i in range(200)])
    gc, seqs = run(store, body)
    assert sorted(seqs) == list(range(1, 201))
    assert 1 <= gc.syncs <= gc.commits <= 200
    f = gc.fsync_stats()
    assert f["fsyncs"] == gc.syncs and f["deliveries_per_fsync"] == round(200 / gc.syncs, 2)
    assert 0 < f["p50_s"] <= f["p99_s"] <= f["max_s"]
    assert sorted(r["i"] for _, r in inbox(store)) == list(range(200))


def test_a_commit_that_fails_fails_its_whole_batch_and_keeps_nothing_of_it(tmp_path):
    """A map at its maximum: the batch with a record too big for it fails whole (one
    transaction); the deliveries before it stay, and the next batch that fits commits."""
    s = Store.open(tmp_path / "small", map_size=1 << 16, max_map_size=1 << 16)
    try:
        async def body(gc):
            first = await gc.add({"i": 0})
            batch = await asyncio.gather(gc.add({"i": 1}), gc.add({"pad": "x" * 200_000}),
                                         return_exceptions=True)
            return first, batch, await gc.add({"i": 2})
        _, (first, batch, last) = run(s, body)
        assert first == 1 and last == 2
        assert all(isinstance(e, Exception) for e in batch)
        assert [r.get("i") for _, r in inbox(s)] == [0, 2]
    finally:
        s.close()


def test_an_fsync_that_fails_reaches_every_delivery_it_covered(store, monkeypatch):
    """The disk refusing an fsync (injected: a disk cannot be made to fail here) is raised to
    every add() whose batch it was to make durable, and the next fsync serves the next batch."""
    real, calls = store.sync, []

    def failing_once():
        calls.append(1)
        if len(calls) == 1:
            raise StoreError("fsync failed (EIO, injected)")
        real()
    monkeypatch.setattr(store, "sync", failing_once)

    async def body(gc):
        first = await asyncio.gather(gc.add({"i": 0}), gc.add({"i": 1}), return_exceptions=True)
        return first, await gc.add({"i": 2})
    _, (first, last) = run(store, body)
    assert [type(e) for e in first] == [StoreError, StoreError] and "EIO" in str(first[0])
    assert last == 3        # committed, not acknowledged: Moralis retries, dedup drops the copy


def test_a_commit_waiting_for_another_process_lock_completes_when_it_frees(store):
    """Another process holds the writer lock: the batch goes to the store's writer thread and
    add() returns once the lock frees, committed and fsynced."""
    fd = os.open(os.path.join(store.path, WRITER_LOCK), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = threading.Event()

    def release():
        released.wait(10)
        fcntl.flock(fd, fcntl.LOCK_UN)

    t = threading.Thread(target=release)
    t.start()
    try:
        async def body(gc):
            task = asyncio.ensure_future(gc.add({"i": 0}))
            await asyncio.sleep(0.05)
            assert not task.done() and gc._queued
            released.set()
            return await asyncio.wait_for(task, 10)
        gc, seq = run(store, body)
        assert seq == 1 and not gc._queued
        assert [r["i"] for _, r in inbox(store)] == [0]
    finally:
        released.set()
        t.join()
        os.close(fd)
