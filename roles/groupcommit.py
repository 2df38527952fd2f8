"""The receiver's group commit: the deliveries accepted in one turn of the event loop go into one
LMDB transaction, and one fsync makes a batch durable before any of its 200s.

    handler: add(record) ─► pending ─(next turn of the loop)─► one transaction, in the HTTP
                                  thread (write(inline=True): 30-60 µs; the store's writer
                                  thread only while another process holds the writer lock)
             committed, waiting ─(no fsync running)─► fsync thread: store.sync() ─► the loop:
                                                      each handler gets its seq, answers 200

While one fsync runs, the next batches commit and wait together for the one after it, so the
number of fsyncs adapts to the disk (one at a time, never more than one per turn of the loop).

Why not the store's writer thread with durable jobs, as before.  There every delivery was a job
of its own and a done-callback of its own (a wake-up of the loop per delivery), and the writer
thread took the GIL back six to eight times per batch (after the condition wait, each flock,
the commit, the fsync, each job's finish); on 2 cores with 8 senders the HTTP thread holds the
GIL most of the time, so each of those waits could last the 0.5 ms switch interval.  Measured
with `syndicate bench webhook`: the writer thread switched ~3.5 times per delivery, the HTTP
thread spent ~100 µs more per delivery than without the inbox, and 8 senders saw p50 3.7 ms.
Here the fsync thread takes the GIL back three times per batch and wakes the loop once.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time

from .success import percentile

INBOX = "inbox"
RECENT = 512           # fsyncs whose durations fsync_stats() summarises


class GroupCommit:
    """Records appended under `prefix` in the `inbox` database, durable when add() returns.
    Owned by the loop it was made in: add() is called from that loop's thread only."""

    def __init__(self, store, prefix: str, loop: asyncio.AbstractEventLoop):
        self.store, self.prefix, self.loop = store, prefix, loop
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._unsynced: list[tuple[asyncio.Future, int]] = []   # committed, not yet fsynced
        self._queued: set = set()       # commits handed to the store's writer thread
        self._syncing = False
        self._handoff: list | None = None
        self._go = threading.Semaphore(0)
        self.commits = self.syncs = self.synced = 0
        self._took: collections.deque = collections.deque(maxlen=RECENT)   # s, fsync thread
        self._thread = threading.Thread(target=self._sync_loop, name="inbox-fsync", daemon=True)
        self._thread.start()

    async def add(self, record: dict) -> int:
        """Commit and fsync `record`; its seq.  Raises what the commit or the fsync raised."""
        fut = self.loop.create_future()
        self._pending.append((record, fut))
        if len(self._pending) == 1:
            self.loop.call_soon(self._commit)
        return await fut

    def fsync_stats(self) -> dict:
        """What the disk does to every 200: fsyncs so far, deliveries made durable per fsync,
        and the last RECENT fsyncs' p50 / p99 / max in seconds (None before the first)."""
        took = list(self._took)

        def q(f: float) -> float | None:
            v = percentile(took, f)
            return None if v is None else round(v, 6)
        return {"fsyncs": self.syncs, "deliveries_per_fsync":
                round(self.synced / self.syncs, 2) if self.syncs else None,
                "p50_s": q(0.5), "p99_s": q(0.99), "max_s": q(1.0)}

    def close(self, timeout: float = 5.0) -> None:
        """After the loop has stopped: let the commits in the writer's queue finish, then stop
        the fsync thread (an fsync under way completes first)."""
        for job in list(self._queued):
            job.wait(timeout)
        self._handoff = None
        self._go.release()
        self._thread.join(timeout)

    # -- the loop's side ----------------------------------------------------------------------
    def _commit(self) -> None:
        batch, self._pending = self._pending, []
        try:
            job = self.store.append_many(INBOX, self.prefix, [r for r, _ in batch], inline=True)
        except Exception as e:          # refused before any write (a closed store, a secret)
            _fail([f for _, f in batch], e)
            return
        if job.done():
            self._committed(batch, job)
        else:
            self._queued.add(job)
            job.add_done_callback(lambda j: self._threadsafe(self._committed, batch, j))

    def _committed(self, batch: list, job) -> None:
        self._queued.discard(job)
        if job.error is not None:       # one transaction: none of the batch is in the inbox
            _fail([f for _, f in batch], job.error)
            return
        self.commits += 1
        first = job.results[-1] - len(batch) + 1
        self._unsynced.extend((f, first + i) for i, (_, f) in enumerate(batch))
        self._start_sync()

    def _start_sync(self) -> None:
        if self._syncing or not self._unsynced:
            return
        self._syncing = True
        self._handoff, self._unsynced = self._unsynced, []
        self._go.release()

    def _synced(self, group: list, error: BaseException | None) -> None:
        self._syncing = False
        self.syncs += 1
        self.synced += len(group)
        for fut, seq in group:
            if fut.done():              # the handler was cancelled (its client went away)
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(seq)
        self._start_sync()

    def _threadsafe(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:            # the loop has closed (stopping): close() waits instead
            pass

    # -- the fsync thread ---------------------------------------------------------------------
    def _sync_loop(self) -> None:
        while True:
            self._go.acquire()
            group = self._handoff
            if group is None:
                return
            t0 = time.perf_counter()
            try:
                self.store.sync()
                error = None
            except BaseException as e:
                error = e
            self._took.append(time.perf_counter() - t0)
            self._threadsafe(self._synced, group, error)


def _fail(futs: list, error: BaseException) -> None:
    for f in futs:
        if not f.done():
            f.set_exception(error)
