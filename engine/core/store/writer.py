"""Writing the store: `WritableStore`, the handle of an engine process (supervisor, roles), with
its writer thread, its inline commits and the growth of the map.

    caller (switch path or not)                         this process            other processes
    write(ops, inline=True) ── writer lock free now? ── yes: one txn here ──┐
          │                                              no ─┐              │   flock on
          ▼                                                  ▼              ├─► syndicate.writer.lock,
    append / log_event / save_checkpoint ─────────► jobs queue ─► writer ───┘   then LMDB's lock
    append_discovery ─► pending (committed with the next batch or checkpoint)

Why a writer thread.  LMDB has one writer lock per environment, and `begin(write=True)` waits
for it without a timeout: a role whose neighbour holds the lock (or is descheduled holding it,
or is fsyncing in "power" mode) would wait as long as that takes.  The switch must not.  So
every write this process makes goes through one writer thread, which may wait (py-lmdb
releases the GIL while it waits for the lock and while it writes), and a checkpoint on the
switch path only waits for it up to its budget.  Handing a job to a thread and being woken
costs 40 µs at p50 but p99 in the hundreds of µs on a busy 2-core box, so the switch path first
tries to commit inline: it takes the cross-process writer lock (an `flock` on
`syndicate.writer.lock` that every Store writer takes before LMDB's own lock) without waiting;
if that succeeds LMDB's lock is free too and the commit costs ~10 µs ("process" durability).
If it fails, the job goes to the writer thread and completes as soon as the lock frees.

Sequences are assigned inside the write transaction from the last committed key
(keys.last_seq), so they never go backwards across restarts, even if two processes of one role
overlap.  Durability is described in engine/core/store/__init__.py.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from dataclasses import dataclass

import lmdb

from . import fork, schema
from .jobs import WriteJob
from .keys import (StoreError, last_seq, seq_bytes)
from .reader import Store
from .records import RecordWrites
from .schema import DEFAULT_MAP_SIZE, DEFAULT_MAX_READERS, MAX_MAP_SIZE

WRITER_LOCK = "syndicate.writer.lock"


@dataclass
class StoreStatistics:
    path: str
    durability: str
    map_size: int
    commits: int
    inline_commits: int
    jobs: int
    grows: int
    resizes_adopted: int
    syncs: int
    pending_discoveries: int
    queued_jobs: int
    last_error: str | None


class WritableStore(RecordWrites, Store):
    """An engine process's handle: every write method, the writer thread, reader_check()."""
    readonly = False

    @classmethod
    def open(cls, path: str | os.PathLike, *, durability: str = "process",
             map_size: int = DEFAULT_MAP_SIZE, max_readers: int = DEFAULT_MAX_READERS,
             sync_interval_s: float = 1.0, discovery_flush_s: float = 1.0,
             discovery_batch: int = 64, discoveries_with_checkpoints: bool = False,
             checkpoint_history: int = 16, max_map_size: int = MAX_MAP_SIZE) -> "WritableStore":
        """Open or create the store in directory `path` (see Store.open for the checks)."""
        schema.check_options(durability, map_size, checkpoint_history, discovery_batch)
        self = object.__new__(cls)
        self._init(path)
        self.durability = durability
        self._max_map_size = max_map_size
        self.sync_interval_s, self.discovery_flush_s = sync_interval_s, discovery_flush_s
        self.discovery_batch, self.checkpoint_history = discovery_batch, checkpoint_history
        # A role process commits its discoveries only inside its checkpoints (checkpoint_op),
        # so that after any crash the committed discoveries are exactly those its committed
        # state has made; the role then checkpoints at least every second while some wait.
        self.discoveries_with_checkpoints = discoveries_with_checkpoints
        self._cv = threading.Condition(threading.Lock())   # jobs, pending discoveries, stop
        self._wlock = threading.Lock()     # this process's write order: writer thread vs inline
        self._jobs: list[WriteJob] = []
        self._pending: dict[bytes, list[bytes]] = {}
        self._pending_n = 0
        self.last_error: str | None = None
        self._txn_mean = self._txn_dev = 0.0
        self._unsynced = False      # commits since the last fsync ("periodic")
        self._thread = None
        self._lockfds: tuple[int, int] | None = None
        self._env, self._dbs, self.schema_version = schema.open_writable(
            self.path, durability, map_size, max_readers)
        try:
            fds = []
            for _ in range(2):  # separate open file descriptions: flock excludes each other
                fds.append(os.open(os.path.join(self.path, WRITER_LOCK),
                                   os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
            self._lockfds = (fds[0], fds[1])
        except BaseException:
            for fd in fds:
                os.close(fd)
            self._env.close()
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._writer, name=f"store-writer:{self.path}",
                                        daemon=True)
        self._thread.start()
        fork.track(self)
        return self

    # -- process life -------------------------------------------------------------------------

    def reader_check(self) -> int:
        """Free reader slots of dead processes (returns how many); the supervisor calls it after
        reaping a child, since a SIGKILLed reader pins old pages until then."""
        with self._gate.shared():
            return self._env.reader_check()

    def pending_discoveries(self) -> int:
        """Discoveries appended by this process and not yet committed."""
        return self._pending_n

    def flush(self, timeout: float | None = None) -> bool:
        """Commit buffered discoveries and wait for every write submitted before this call."""
        return self._submit([]).wait(timeout)

    def _disconnect(self, sync: bool) -> None:
        # close(): flush, stop the writer thread, fsync once (a graceful stop then survives a
        # power loss whatever the durability), close the environment.
        if self._thread is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join()
            self._thread = None
        super()._disconnect(sync)
        if self._lockfds:
            for fd in self._lockfds:
                os.close(fd)
            self._lockfds = None

    def _after_fork_child(self) -> None:
        # The writer thread did not come along: drop what belonged to it and to the parent.
        super()._after_fork_child()
        if self._lockfds:      # the parent's flock must not outlive the parent through us
            for fd in self._lockfds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._lockfds = None
        self._jobs, self._pending, self._pending_n = [], {}, 0
        self._cv, self._wlock = threading.Condition(threading.Lock()), threading.Lock()
        self._thread = None

    def _alive(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed (or was opened before this process forked)")

    def statistics(self) -> StoreStatistics:
        with self._cv:
            pending, queued = self._pending_n, len(self._jobs)
        size = self._env.info()["map_size"] if self._env is not None else 0
        return StoreStatistics(self.path, self.durability, size, pending_discoveries=pending,
                               queued_jobs=queued, last_error=self.last_error, **self._stats)

    # -- writing: jobs ------------------------------------------------------------------------

    def write(self, ops: list, *, inline: bool = False, queue: bool = True) -> WriteJob | None:
        """Commit ops (functions of a write txn) in one transaction.  inline=True: now, in this
        thread, if no process holds the writer lock and this process has nothing queued; else
        (and always with inline=False) by the writer thread — or, with queue=False, not at all:
        None, the caller tries again later (a role's background task: the writer thread, at
        the role's nice 10, would hold the GIL mid-job while the boosted main thread waits).
        Never waits for another process.  Returns the job: job.inline tells which happened,
        job.wait(timeout) waits for it."""
        self._alive()
        if not inline or not self._wlock.acquire(blocking=False):
            return self._submit(ops) if queue or not inline else None
        fd = self._lockfds[1]
        try:
            with self._cv:
                if self._jobs:   # earlier writes first: keep this process's order
                    return self._queue(WriteJob(ops)) if queue else None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._submit(ops) if queue else None
            try:
                return self._commit_inline(ops)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._wlock.release()

    def join_queued(self, job: WriteJob, ops: list) -> bool:
        """Add ops to the transaction of job if the writer has not started it yet (True);
        False if it has (or has finished): then write them on their own."""
        with self._cv:
            if job.started or job.done():
                return False
            job.ops.extend(ops)
            return True

    def commit_estimate_s(self) -> float:
        """How long a small write transaction has taken lately here (a high estimate)."""
        return self._txn_mean + 4 * self._txn_dev

    def _commit_inline(self, ops: list) -> WriteJob:
        with self._cv:
            pending = None if self.discoveries_with_checkpoints else self._take_pending()
        # the buffered discoveries last: an op in ops may carry earlier ones (checkpoint_op),
        # and seqs must follow the order they were appended in
        all_ops = ops + ([pending] if pending else [])
        job = WriteJob(all_ops)
        job.started = True
        try:
            with self._gate.shared():
                results = self._transact(all_ops)
        except (lmdb.MapFullError, lmdb.MapResizedError):
            # Growing the map waits for the whole process: leave it to the writer, first in
            # its queue, the discoveries as a job of their own right after (job.results are
            # ops' own, as a queued job's are)
            job.started = False
            job.ops = ops
            with self._cv:
                self._jobs[0:0] = [job] + ([WriteJob([pending])] if pending else [])
                self._cv.notify()
            return job
        except BaseException as e:
            self.last_error = f"{type(e).__name__}: {e}"
            job.finish(None, e)
            return job
        self._stats["inline_commits"] += 1
        job.inline = True
        job.finish(results[:-1] if pending else results, None)
        return job

    def _submit(self, ops: list, durable: bool = False) -> WriteJob:
        with self._cv:
            if self._closed or self._thread is None:
                raise StoreError(f"{self.path}: store is closed")
            return self._queue(WriteJob(ops, durable))

    def _queue(self, job: WriteJob) -> WriteJob:
        """Append job for the writer thread (caller holds _cv)."""
        self._jobs.append(job)
        self._cv.notify()
        return job

    def _take_pending(self):
        """An op committing every buffered discovery (caller holds _cv), or None."""
        if not self._pending_n:
            return None
        pending, self._pending, self._pending_n = self._pending, {}, 0
        dbh = self._dbs["discoveries"]

        def op(txn):
            cur = txn.cursor(dbh)
            last = {}
            for prefix, records in pending.items():
                seq = last_seq(cur, prefix)
                cur.putmulti([(prefix + seq_bytes(seq + i), raw)
                              for i, raw in enumerate(records, 1)], append=False)
                last[prefix] = seq + len(records)
            return last
        return op

    def _transact(self, ops: list) -> list:
        t0 = time.perf_counter()
        with self._env.begin(write=True) as txn:
            results = [op(txn) for op in ops]
        took = time.perf_counter() - t0
        # What a commit costs lately (mean + 4 mean deviations), for Checkpointer to decide
        # whether an inline commit fits its budget; a slow disk or "power" durability raises it.
        self._txn_mean += (took - self._txn_mean) / 8
        self._txn_dev += (abs(took - self._txn_mean) - self._txn_dev) / 8
        self._stats["commits"] += 1
        self._unsynced = True
        return results

    # -- the writer thread --------------------------------------------------------------------

    def _writer(self) -> None:
        last_flush = last_sync = time.monotonic()
        periodic = self.durability == "periodic"
        while True:
            with self._cv:
                while True:
                    now = time.monotonic()
                    auto = 0 if self.discoveries_with_checkpoints else self._pending_n
                    due_flush = auto and (now - last_flush >= self.discovery_flush_s
                                          or self._pending_n >= self.discovery_batch)
                    # Inline commits do not wake this thread: in "periodic" it checks each interval.
                    due_sync = periodic and self._unsynced and now - last_sync >= self.sync_interval_s
                    if self._jobs or due_flush or due_sync or self._stopping:
                        break
                    waits = [self.discovery_flush_s - (now - last_flush)] if auto else []
                    if periodic:
                        waits.append(self.sync_interval_s - (now - last_sync))
                    self._cv.wait(max(min(waits), 0.001) if waits else None)
                if self._stopping and not self._jobs and not (
                        self._pending_n and not self.discoveries_with_checkpoints):
                    if periodic and self._unsynced:
                        self._sync()
                    break
            if self._jobs or (self._pending_n and not self.discoveries_with_checkpoints):
                with self._wlock:
                    with self._cv:
                        jobs, self._jobs = self._jobs, []
                        pending = None if self.discoveries_with_checkpoints else \
                            self._take_pending()
                        for job in jobs:
                            job.started = True
                    self._commit_jobs(jobs, pending)
                last_flush = time.monotonic()
                if any(job.durable for job in jobs) and self.durability != "power":
                    error = self._sync()
                    for job in jobs:
                        if job.durable and error is not None and job.error is None:
                            job.error = error
                for job in jobs:
                    job.finish(job.results, job.error)
            if due_sync:
                self._sync()
                last_sync = time.monotonic()

    def _commit_jobs(self, jobs: list[WriteJob], pending) -> None:
        # the discoveries buffered now go after every job: a job may carry earlier ones (a
        # checkpoint's, or an inline commit handed back on a full map)
        ops, spans = [], []
        for job in jobs:
            spans.append((len(ops), len(ops) + len(job.ops)))
            ops.extend(job.ops)
        if pending:
            ops.append(pending)
        try:
            results = self._commit_blocking(ops)
        except BaseException as e:  # every job of the batch fails with it; the writer goes on
            self.last_error = f"{type(e).__name__}: {e}"
            for job in jobs:
                job.error = e
            return
        for job, (a, b) in zip(jobs, spans):
            job.results = results[a:b]
        self._stats["jobs"] += len(jobs)

    def _commit_blocking(self, ops: list) -> list:
        fd = self._lockfds[0]
        while True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                with self._gate.shared():
                    return self._transact(ops)
            except lmdb.MapResizedError:
                resized = True
            except lmdb.MapFullError:
                resized = False
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._resize(grow=not resized)

    def _resize(self, grow: bool) -> None:
        """Another process grew the map (adopt its size), or ours is full (adopt, then double).
        set_mapsize only with no transaction open in this process: the gate is exclusive.
        Other processes adopt the new size on their next transaction (MapResizedError), and the
        size is kept in the file's metadata by the next commit (LMDB keeps the larger one)."""
        with self._gate.exclusive():
            old = self._env.info()["map_size"]
            self._env.set_mapsize(0)      # the size in the file, raised by whoever grew it
            self._stats["resizes_adopted"] += 1
            if grow and self._env.info()["map_size"] <= old:
                if old >= self._max_map_size:
                    raise StoreError(f"{self.path}: map full at its maximum {old} bytes")
                self._env.set_mapsize(min(old * 2, self._max_map_size))
                self._stats["grows"] += 1

    def sync(self) -> None:
        """Make every transaction committed so far (by any process) durable: one fsync of the
        data file, in the calling thread, the GIL released while the disk works.  What a
        group commit calls once for a batch of commits made with write(..., inline=True);
        StoreError if the disk refuses."""
        self._alive()
        error = self._sync()
        if error is not None:
            raise StoreError(f"{self.path}: fsync failed ({error})") from error

    def _sync(self) -> BaseException | None:
        try:
            self._unsynced = False
            with self._gate.shared():
                self._env.sync(True)
            self._stats["syncs"] += 1
            return None
        except lmdb.Error as e:
            self.last_error = f"sync: {e}"
            return e
