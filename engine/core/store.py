"""The engine's durable state: one LMDB environment that every role process writes into.

    role process (opens its own Store after fork)                 LMDB environment (a directory)
    ─────────────────────────────────────────────                 ──────────────────────────────
    Checkpointer.save(states, budget) ──┐ inline: only if the writer lock is free now
                                        ├───────────────────────► one write txn ──► data.mdb
    append_discovery (buffered) ────────┤ otherwise, or late:                         meta tasks
    log_event / append / flush ─────────┴─► writer thread ── batch of jobs ─► one write txn  discoveries
                                            (group commit; grows the map; periodic fsync)  events inbox …
    supervisor: reader_check() after each reaped child                              lock.mdb (readers)
    `syndicate snapshot` (another process): read-only env, read txns only ─────────►

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

Keys sort in time order.  In the sequenced databases (tasks, discoveries, opportunities,
outcomes, models, inbox) a key is `prefix NUL seq` with seq a big-endian u64 that starts at 1
and is assigned inside the write transaction from the last committed key, so sequences never go
backwards across restarts, even if two processes of one role overlap.  In `events` a key is a
big-endian u64 of time_ns, made strictly increasing inside the transaction.  `meta` holds the
schema version.  Values are orjson.  Shown as text, a sequenced key is `prefix/seq`.

Durability (LMDB flags are per process; `syndicate bench store` measures each):
  "process"  (default) sync=False: a commit is a write() into the OS page cache, so a crashed
             or SIGKILLed process never loses a committed record.  An OS crash or power loss
             loses what the kernel had not yet written back (up to ~30 s by default), and
             because nothing orders data before metadata on disk it can leave the file
             inconsistent: check it with `syndicate snapshot verify`, restore from a
             `snapshot copy` backup.  Cost: ~6/10 µs p50/p99 per 1 KiB txn on this machine.
  "periodic" as "process", plus the writer thread fsyncs the file every `sync_interval_s`
             (default 1 s): a power loss loses at most about that interval of commits (the
             integrity caveat narrows to writes since the last sync).  Same commit cost; one
             fsync (~0.1-0.6 ms, off the switch path) per interval.
  "power"    sync=True: every commit fsyncs data then metadata before it returns: nothing
             committed is lost on power loss, if the disk honours flushes.  Cost: the fsyncs,
             215-316 / 360-610 µs per txn here, with stalls of tens of ms when several
             processes commit at once; a switch-path checkpoint then usually goes on late.
Whatever the setting, `append(..., durable=True)` (webhook deliveries in `inbox`) fsyncs before
it returns, so an acknowledged delivery survives a power loss.

Fork.  LMDB forbids using an environment across fork(), and py-lmdb refuses to open, in a
child, an environment its parent had open, until the inherited handle is closed.  Closing it
aborts the transactions the child inherited, which frees the *parent's* reader slots: the
`max_spare_txns` trap (py-lmdb's C extension keeps one spare read transaction, holding a slot,
whatever max_spare_txns says).  So, before any fork (os.register_at_fork), a Store waits until
no transaction of its process is open and drops the spare (set_mapsize(0) aborts it); the
parent then carries on untouched, and the child closes its inherited copy, which owns no slot
and no transaction, and can open its own Store.  The supervisor can keep its Store open while
it forks roles.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import lmdb
import orjson

SCHEMA_VERSION = 1
APPLICATION = "syndicate"
SEQ_DATABASES = ("tasks", "discoveries", "opportunities", "outcomes", "models", "inbox")
DATABASES = ("meta",) + SEQ_DATABASES + ("events",)
DURABILITY = ("process", "periodic", "power")

DEFAULT_MAP_SIZE = 4 << 30      # virtual address space only: the file grows with the data
MAX_MAP_SIZE = 1 << 40
DEFAULT_MAX_READERS = 1024      # a SIGKILLed role leaves its slot until reader_check()
WRITER_LOCK = "syndicate.writer.lock"
_SEP = b"\x00"
_SEQ = 8                        # bytes of a big-endian u64
_SECRET_FIELD = re.compile(r"private.?key|secret|mnemonic|password|seed.?phrase", re.I)

# Migrations from an older schema: {from_version: function(txn, dbs)} each moving one step up.
_MIGRATIONS: dict[int, object] = {}


class StoreError(Exception):
    """A store that cannot be used as asked; the message names the path and what is wrong."""


# ── keys ─────────────────────────────────────────────────────────────────────────────────────

def prefix_bytes(prefix: str) -> bytes:
    if not isinstance(prefix, str) or not prefix or "\x00" in prefix or "/" in prefix:
        raise StoreError(f"bad key prefix {prefix!r}: a non-empty name without '/' or NUL")
    raw = prefix.encode()
    if len(raw) > 256:
        raise StoreError(f"bad key prefix {prefix[:40]!r}…: longer than 256 bytes")
    return raw + _SEP


def seq_key(prefix: str, seq: int) -> bytes:
    return prefix_bytes(prefix) + seq.to_bytes(_SEQ, "big")


def key_text(db: str, key: bytes) -> str:
    """A key as `syndicate snapshot` shows it: prefix/seq, an integer (events) or a name."""
    if db in SEQ_DATABASES and len(key) > _SEQ and key[-_SEQ - 1] == 0:
        return f"{key[:-_SEQ - 1].decode(errors='replace')}/{int.from_bytes(key[-_SEQ:], 'big')}"
    if db == "events" and len(key) == _SEQ:
        return str(int.from_bytes(key, "big"))
    text = key.decode(errors="replace")
    return text if text.isprintable() and "\ufffd" not in text else "0x" + key.hex()


def parse_key(db: str, text: str) -> bytes:
    """The inverse of key_text; `0x…` is taken as raw hex in any database."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise StoreError(f"bad key {text!r}: not hex") from None
    if db in SEQ_DATABASES:
        prefix, _, seq = text.rpartition("/")
        if not prefix or not seq.isdigit():
            raise StoreError(f"bad key {text!r} for {db}: expected PREFIX/SEQ, e.g. base-analyst/12")
        return seq_key(prefix, int(seq))
    if db == "events":
        if not text.isdigit():
            raise StoreError(f"bad key {text!r} for events: expected an integer time_ns")
        return int(text).to_bytes(_SEQ, "big")
    return text.encode()


def _last_seq(cursor, prefix: bytes) -> int:
    """The highest committed seq under prefix (0 if none), by one seek."""
    if cursor.set_range(prefix + b"\xff" * _SEQ):
        found = cursor.prev()
    else:
        found = cursor.last()
    if found:
        key = cursor.key()
        if key.startswith(prefix) and len(key) == len(prefix) + _SEQ:
            return int.from_bytes(key[-_SEQ:], "big")
    return 0


def _encode(what: str, value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise StoreError(f"{what}: not JSON-serialisable: {e}") from None


def _refuse_secrets(what: str, record) -> None:
    if isinstance(record, dict):
        for k in record:
            if isinstance(k, str) and _SECRET_FIELD.search(k):
                raise StoreError(f"{what}: field {k!r} looks like a secret; secrets are never stored")


# ── write jobs ───────────────────────────────────────────────────────────────────────────────

class _Job:
    """Some operations to commit in one transaction, and a way to wait for that."""
    __slots__ = ("ops", "durable", "results", "error", "started", "inline", "_done", "submitted",
                 "committed")

    def __init__(self, ops: list, durable: bool = False):
        self.ops, self.durable = ops, durable
        self.results: list | None = None
        self.error: BaseException | None = None
        self.started = self.inline = False
        self.submitted = time.perf_counter()
        self.committed = 0.0
        self._done = threading.Lock()
        self._done.acquire()

    def finish(self, results: list | None, error: BaseException | None) -> None:
        self.results, self.error, self.committed = results, error, time.perf_counter()
        self._done.release()

    def done(self) -> bool:
        return self.committed != 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """True once committed (or failed: see .error); False if the timeout passed first."""
        if self.committed:
            return True
        got = self._done.acquire() if timeout is None else self._done.acquire(timeout=max(timeout, 0))
        if got:
            self._done.release()
        return got

    def result(self, timeout: float | None = None) -> list:
        if not self.wait(timeout):
            raise StoreError("write not committed within the timeout")
        if self.error is not None:
            raise self.error
        return self.results


class _Gate:
    """Shared by every transaction of this process, exclusive for set_mapsize (which LMDB allows
    only while this process has no transaction open) and for close before a fork."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._mine = threading.local()   # how deep this thread is in shared()

    def held_here(self) -> bool:
        return getattr(self._mine, "depth", 0) > 0

    @contextlib.contextmanager
    def shared(self):
        with self._cv:
            while self._exclusive:
                self._cv.wait()
            self._shared += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cv:
                self._shared -= 1
                if not self._shared:
                    self._cv.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cv:
            while self._exclusive:
                self._cv.wait()
            self._exclusive = True
            while self._shared:
                self._cv.wait()

    def release_exclusive(self) -> None:
        with self._cv:
            self._exclusive = False
            self._cv.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()


# ── the store ────────────────────────────────────────────────────────────────────────────────

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


class Store:
    """One process's handle on the environment.  Open with Store.open(); close() flushes."""

    def __init__(self):  # use Store.open
        raise TypeError("use Store.open(path, ...)")

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, durability: str = "process",
             map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False,
             max_readers: int = DEFAULT_MAX_READERS, sync_interval_s: float = 1.0,
             discovery_flush_s: float = 1.0, discovery_batch: int = 64,
             discoveries_with_checkpoints: bool = False,
             checkpoint_history: int = 16, max_map_size: int = MAX_MAP_SIZE) -> "Store":
        """Open (creating it unless readonly) the environment in directory `path`.

        readonly: for `syndicate snapshot`: never writes the data file, works beside a live
        engine (it takes a reader slot in lock.mdb like any reader; if lock.mdb is absent no
        engine can be running, so it is not created).  Raises StoreError for a path that is not
        a syndicate store, a truncated file, or a schema this code does not know."""
        if durability not in DURABILITY:
            raise StoreError(f"durability {durability!r}: one of {', '.join(DURABILITY)}")
        if checkpoint_history < 1 or discovery_batch < 1 or map_size < 1 << 16:
            raise StoreError("checkpoint_history and discovery_batch must be >= 1, map_size >= 64 KiB")
        self = object.__new__(cls)
        self.path = os.fspath(path)
        self.durability, self.readonly = durability, readonly
        self._params = dict(map_size=map_size, max_readers=max_readers)
        self._max_map_size = max_map_size
        self.sync_interval_s, self.discovery_flush_s = sync_interval_s, discovery_flush_s
        self.discovery_batch, self.checkpoint_history = discovery_batch, checkpoint_history
        # A role process commits its discoveries only inside its checkpoints (checkpoint_op),
        # so that after any crash the committed discoveries are exactly those its committed
        # state has made; the role then checkpoints at least every second while some wait.
        self.discoveries_with_checkpoints = discoveries_with_checkpoints
        self._gate = _Gate()
        self._cv = threading.Condition(threading.Lock())   # jobs, pending discoveries, stop
        self._wlock = threading.Lock()     # this process's write order: writer thread vs inline
        self._jobs: list[_Job] = []
        self._pending: dict[bytes, list[bytes]] = {}
        self._pending_n = 0
        self._stats = dict(commits=0, inline_commits=0, jobs=0, grows=0, resizes_adopted=0, syncs=0)
        self.last_error: str | None = None
        self._txn_mean = self._txn_dev = 0.0
        self._unsynced = False      # commits since the last fsync ("periodic")
        self._env = None
        self._closed = False
        self._forking = False
        self._thread = None
        self._lockfds: tuple[int, int] | None = None
        self._connect()
        _OPEN_STORES.add(self)
        return self

    def _connect(self) -> None:
        path = self.path
        if self.readonly:
            self._check_files(path)
            lock = os.path.exists(os.path.join(path, "lock.mdb"))
            # A map as large as the engine's, so a live writer rarely outgrows it; if it does
            # between LMDB sizing the map and py-lmdb's first read, open again.
            size = max(self._params["map_size"], os.path.getsize(os.path.join(path, "data.mdb")))
            for attempt in range(100):
                try:
                    # max_readers=1: an existing lock file keeps its size (LMDB only grows it).
                    self._env = lmdb.open(path, readonly=True, lock=lock, create=False, max_dbs=16,
                                          max_readers=1, map_size=size)
                    break
                except lmdb.MapResizedError:
                    continue
                except lmdb.Error as e:
                    raise StoreError(f"{path}: not a readable LMDB environment ({_reason(e)})") from None
            else:
                raise StoreError(f"{path}: the map keeps growing under us; try again")
            try:
                self._check_truncation()
                self._dbs = self._adopting(self._open_dbs_readonly)
            except BaseException:
                self._env.close()
                raise
        else:
            if os.path.exists(path) and not os.path.isdir(path):
                raise StoreError(f"{path}: exists and is not a directory")
            data = os.path.join(path, "data.mdb")
            if os.path.isfile(data) and 0 < os.path.getsize(data) < 2 * 4096:
                raise StoreError(f"{data}: {os.path.getsize(data)} bytes, too short for an LMDB file")
            flags = dict(sync=self.durability == "power", metasync=self.durability == "power")
            try:
                self._env = lmdb.open(path, max_dbs=16, map_size=self._params["map_size"],
                                      max_readers=self._params["max_readers"], max_spare_txns=0,
                                      create=True, **flags)
            except lmdb.Error as e:
                raise StoreError(f"{path}: cannot open the LMDB environment ({_reason(e)})") from None
            try:
                self._check_truncation()
                self._env.reader_check()
                self._dbs = self._adopting(self._open_dbs_writable)
                fds = []
                for _ in range(2):  # separate open file descriptions: flock excludes each other
                    fds.append(os.open(os.path.join(path, WRITER_LOCK),
                                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
                self._lockfds = (fds[0], fds[1])
            except BaseException:
                self._env.close()
                raise
            self._stopping = False
            self._thread = threading.Thread(target=self._writer, name=f"store-writer:{path}",
                                            daemon=True)
            self._thread.start()

    def _adopting(self, fn):
        """fn(), again after adopting the map size if a live writer grew the file meanwhile."""
        for _ in range(100):
            try:
                return fn()
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except StoreError as e:
                if "MDB_MAP_RESIZED" not in str(e):
                    raise
                self._env.set_mapsize(0)
        raise StoreError(f"{self.path}: the map keeps growing under us; try again")

    @staticmethod
    def _check_files(path: str) -> None:
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such directory")
        if not os.path.isdir(path):
            raise StoreError(f"{path}: not a directory (a store is a directory holding data.mdb)")
        data = os.path.join(path, "data.mdb")
        if not os.path.isfile(data):
            raise StoreError(f"{path}: no data.mdb, not an LMDB environment")
        if os.path.getsize(data) < 2 * 4096:
            raise StoreError(f"{data}: {os.path.getsize(data)} bytes, too short for an LMDB file")

    def _check_truncation(self) -> None:
        # Pages past the end of a mapped file are a SIGBUS, not an exception: refuse a file
        # shorter than its own metadata says, before any page is touched.
        info, psize = self._env.info(), self._env.stat()["psize"]
        need = (info["last_pgno"] + 1) * psize
        data = os.path.join(self.path, "data.mdb")
        have = os.path.getsize(data)
        if have < need:
            raise StoreError(f"{data}: truncated ({have} bytes, its metadata needs {need})")

    def _read_schema(self, txn, meta) -> int | None:
        raw = txn.get(b"schema_version", db=meta)
        if raw is None:
            return None
        try:
            version = orjson.loads(raw)
            app = txn.get(b"application", db=meta)
            app = orjson.loads(app) if app is not None else None
        except orjson.JSONDecodeError:
            raise StoreError(f"{self.path}: meta/schema_version is not JSON, not a syndicate store") from None
        if app != APPLICATION or not isinstance(version, int):
            raise StoreError(f"{self.path}: an LMDB environment of {app!r}, not a syndicate store")
        return version

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this code "
                             f"knows ({SCHEMA_VERSION}); upgrade syndicate to read it")

    def _open_dbs_readonly(self) -> dict:
        env = self._env
        with env.begin() as txn:
            names = {k for k, _ in txn.cursor()}
        if b"meta" not in names:
            what = "an empty LMDB environment" if not names else "a foreign LMDB environment"
            raise StoreError(f"{self.path}: {what} (no meta database), not a syndicate store")
        # Handles opened inside a read transaction die with it (py-lmdb aborts read txns),
        # so open them on their own.
        try:
            dbs = {"meta": env.open_db(b"meta", create=False)}
            for name in DATABASES[1:]:
                if name.encode() in names:
                    dbs[name] = env.open_db(name.encode(), create=False)
        except lmdb.Error as e:
            raise StoreError(f"{self.path}: unusable databases, not a syndicate store ({_reason(e)})") from None
        with env.begin() as txn:
            version = self._read_schema(txn, dbs["meta"])
            if version is None:
                raise StoreError(f"{self.path}: meta has no schema_version, not a syndicate store")
            self._check_version(version)
            if version < SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is older than this code "
                                 f"reads ({SCHEMA_VERSION}); open it once with the engine to migrate")
        self.schema_version = version
        return dbs

    def _open_dbs_writable(self) -> dict:
        env = self._env
        # One write transaction checks, creates and migrates, so roles that open a new store
        # at the same moment see either nothing or everything.
        with env.begin(write=True) as txn:
            names = {k for k, _ in txn.cursor()}
            ours = {n.encode() for n in DATABASES}
            if names and b"meta" not in names:
                raise StoreError(f"{self.path}: a foreign LMDB environment (databases "
                                 f"{sorted(n.decode(errors='replace') for n in names)[:5]}), "
                                 "not a syndicate store")
            meta = env.open_db(b"meta", txn=txn)
            version = self._read_schema(txn, meta)
            dbs = {name: env.open_db(name.encode(), txn=txn) for name in DATABASES}
            if version is None:
                if names - ours:
                    raise StoreError(f"{self.path}: a foreign LMDB environment, not a syndicate store")
                txn.put(b"application", orjson.dumps(APPLICATION), db=meta)
                txn.put(b"created_ns", orjson.dumps(time.time_ns()), db=meta)
                version = SCHEMA_VERSION
                txn.put(b"schema_version", orjson.dumps(version), db=meta)
            self._check_version(version)
            while version < SCHEMA_VERSION:
                step = _MIGRATIONS.get(version)
                if step is None:
                    raise StoreError(f"{self.path}: schema version {version} is older than "
                                     f"{SCHEMA_VERSION} and no migration from it exists")
                step(txn, dbs)
                version += 1
                txn.put(b"schema_version", orjson.dumps(version), db=meta)
        self.schema_version = version
        return dbs

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
        if self.readonly:
            return True
        job = self._submit([])
        return job.wait(timeout)

    def close(self) -> None:
        """Flush, stop the writer thread, fsync once (a graceful stop then survives a power
        loss whatever the durability), close the environment.  Repeat calls do nothing."""
        if self._closed:
            return
        self._closed = True
        _OPEN_STORES.discard(self)
        self._disconnect(sync=True)

    def _disconnect(self, sync: bool) -> None:
        if self._thread is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join()
            self._thread = None
        if self._env is not None:
            with self._gate.exclusive():
                if sync and not self.readonly:
                    with contextlib.suppress(lmdb.Error):
                        self._env.sync(True)
                self._env.close()
                self._env = None
        if self._lockfds:
            for fd in self._lockfds:
                os.close(fd)
            self._lockfds = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _before_fork(self) -> None:
        if self._gate.held_here():
            # Forking from inside store.read(): that transaction stays open, so the child
            # cannot be given a clean handle; it keeps the inherited one and cannot open the
            # store (py-lmdb: "already open in this process").  Fork outside read blocks.
            return
        # Held across the fork: no transaction of this process is open while it happens.
        self._gate.acquire_exclusive()
        self._forking = True
        with contextlib.suppress(lmdb.Error):
            self._env.set_mapsize(0)   # aborts the cached spare read txn and frees its slot

    def _after_fork_parent(self) -> None:
        if self._forking:
            self._forking = False
            self._gate.release_exclusive()

    def _after_fork_child(self) -> None:
        # The inherited handle owns no slot and no transaction now: closing it touches only this
        # process.  The writer thread did not come along; this object is dead here.
        self._closed = True
        env, self._env = self._env, None
        if env is not None and self._forking:
            with contextlib.suppress(lmdb.Error):
                env.close()
        self._forking = False
        if self._lockfds:      # the parent's flock must not outlive the parent through us
            for fd in self._lockfds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._lockfds = None
        self._jobs, self._pending, self._pending_n = [], {}, 0
        self._gate, self._cv, self._wlock = _Gate(), threading.Condition(threading.Lock()), threading.Lock()
        self._thread = None

    def _alive(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed (or was opened before this process forked)")
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")

    # -- writing: public ----------------------------------------------------------------------

    def save_checkpoint(self, role: str, states: dict) -> int:
        """Commit {task: state} for role (and every buffered discovery); wait; return its seq."""
        self._alive()
        return self._submit([self.checkpoint_op(role, states)]).result()[-1]

    def append_discovery(self, role: str, record) -> None:
        """Buffer a discovery; committed within discovery_flush_s, when discovery_batch are
        buffered, with the next checkpoint, or on flush().  Never blocks on the disk."""
        self._alive()
        key = prefix_bytes(role)
        _refuse_secrets(f"discovery of {role}", record)
        raw = _encode(f"discovery of {role}", record)
        with self._cv:
            self._pending.setdefault(key, []).append(raw)
            self._pending_n += 1
            if self._pending_n >= self.discovery_batch and not self.discoveries_with_checkpoints:
                self._cv.notify()

    def append(self, db: str, prefix: str, record, *, durable: bool = False) -> int:
        """Commit one record under prefix in a sequenced database; wait; return its seq.
        durable=True also fsyncs before returning (inbox: durable before acknowledged)."""
        self._alive()
        if db not in SEQ_DATABASES:
            raise StoreError(f"append: unknown database {db!r} (one of {', '.join(SEQ_DATABASES)})")
        key = prefix_bytes(prefix)
        _refuse_secrets(f"{db} record under {prefix}", record)
        raw = _encode(f"{db} record under {prefix}", record)
        dbh = self._dbs[db]

        def op(txn):
            seq = _last_seq(txn.cursor(dbh), key) + 1
            txn.put(key + seq.to_bytes(_SEQ, "big"), raw, db=dbh)
            return seq
        return self._submit([op], durable=durable).result()[-1]

    def log_event(self, kind: str, /, **fields) -> None:
        """Record what the supervisor or watchdog did; committed by the writer thread shortly
        after (flush() waits for it).  Never blocks on the disk."""
        self._alive()
        _refuse_secrets(f"event {kind}", fields)
        raw = _encode(f"event {kind}", {"kind": kind, "pid": os.getpid(), **fields})
        dbh = self._dbs["events"]

        def op(txn):
            cur = txn.cursor(dbh)
            last = int.from_bytes(cur.key(), "big") if cur.last() else 0
            ts = max(time.time_ns(), last + 1)
            txn.put(ts.to_bytes(_SEQ, "big"), raw, db=dbh)
            return ts
        self._submit([op])

    def checkpoint_op(self, role: str, states: dict):
        """The write of one checkpoint, encoded now (the caller may mutate states right after);
        Checkpointer and save_checkpoint hand it to _write/_submit."""
        if not isinstance(states, dict):
            raise StoreError(f"checkpoint of {role}: states must be a dict {{task: state}}, "
                             f"not {type(states).__name__}")
        key = prefix_bytes(role)
        body = _encode(f"checkpoint of {role}", states)
        now = time.time_ns()
        dbh, keep = self._dbs["tasks"], self.checkpoint_history
        # The discoveries buffered up to now belong with this state: they are taken now and
        # committed in the same transaction, so state and discoveries always agree after a
        # crash (a state never claims work whose discoveries are missing, and no discovery is
        # committed ahead of the state that produced it, which a restart would produce again).
        with self._cv:
            discoveries = self._take_pending()

        def op(txn):
            if discoveries is not None:
                discoveries(txn)
            cur = txn.cursor(dbh)
            seq = _last_seq(cur, key) + 1
            value = b'{"seq":%d,"time_ns":%d,"states":%s}' % (seq, now, body)
            txn.put(key + seq.to_bytes(_SEQ, "big"), value, db=dbh)
            # Keep the newest `keep`: usually one delete per save.
            if seq > keep and cur.set_range(key):
                while cur.key().startswith(key) and int.from_bytes(cur.key()[-_SEQ:], "big") <= seq - keep:
                    if not cur.delete():
                        break
            return seq
        return op

    # -- writing: machinery -------------------------------------------------------------------

    def _submit(self, ops: list, durable: bool = False, front: bool = False) -> _Job:
        job = _Job(ops, durable)
        with self._cv:
            if self._closed or self._thread is None:
                raise StoreError(f"{self.path}: store is closed")
            if front:
                self._jobs.insert(0, job)
            else:
                self._jobs.append(job)
            self._cv.notify()
        return job

    def _write(self, ops: list, *, inline: bool) -> _Job:
        """Commit ops now in this thread if nobody holds the writer lock (inline), else hand
        them to the writer thread.  Returns the job: done() tells which happened."""
        self._alive()
        if not inline or not self._wlock.acquire(blocking=False):
            return self._submit(ops)
        fd = self._lockfds[1]
        try:
            with self._cv:
                if self._jobs:   # earlier writes first: keep this process's order
                    return self._submit_locked(ops)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._submit(ops)
            try:
                with self._cv:
                    pending = None if self.discoveries_with_checkpoints else self._take_pending()
                all_ops = ([pending] if pending else []) + ops
                job = _Job(all_ops)
                job.started = True
                try:
                    with self._gate.shared():
                        results = self._transact(all_ops)
                except (lmdb.MapFullError, lmdb.MapResizedError):
                    # Growing the map waits for the whole process: leave it to the writer.
                    job.started = False
                    with self._cv:
                        self._jobs.insert(0, job)
                        self._cv.notify()
                    return job
                except BaseException as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    job.finish(None, e)
                    return job
                self._stats["inline_commits"] += 1
                job.inline = True
                job.finish(results[1:] if pending else results, None)
                return job
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._wlock.release()

    def _submit_locked(self, ops: list) -> _Job:
        job = _Job(ops)
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
                seq = _last_seq(cur, prefix)
                cur.putmulti([(prefix + (seq + i).to_bytes(_SEQ, "big"), raw)
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

    def commit_estimate_s(self) -> float:
        """How long a small write transaction has taken lately here (a high estimate)."""
        return self._txn_mean + 4 * self._txn_dev

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

    def _commit_jobs(self, jobs: list[_Job], pending) -> None:
        ops = [pending] if pending else []
        spans = []
        for job in jobs:
            spans.append((len(ops), len(ops) + len(job.ops)))
            ops.extend(job.ops)
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

    # -- reading ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator["Reader"]:
        """A consistent read-only view for the duration of the with-block.  Keep it short in an
        engine process: a growing map waits for it."""
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        while True:
            with self._gate.shared():
                try:
                    txn = self._env.begin()
                except lmdb.MapResizedError:
                    pass
                else:
                    try:
                        yield Reader(self, txn)
                    finally:
                        txn.abort()
                    return
            with self._gate.exclusive():
                self._env.set_mapsize(0)
                self._stats["resizes_adopted"] += 1

    def load_checkpoint(self, role: str) -> dict | None:
        """The last committed checkpoint of role: {"seq", "time_ns", "states": {task: state}}."""
        with self.read() as r:
            return r.last("tasks", role)

    def statistics(self) -> StoreStatistics:
        with self._cv:
            pending, queued = self._pending_n, len(self._jobs)
        size = self._env.info()["map_size"] if self._env is not None else 0
        return StoreStatistics(self.path, self.durability, size, pending_discoveries=pending,
                               queued_jobs=queued, last_error=self.last_error, **self._stats)

    def info(self) -> dict:
        """Environment figures for `snapshot info`."""
        env = self._env
        data = os.path.join(self.path, "data.mdb")
        return {"path": self.path, "schema_version": self.schema_version,
                "file_bytes": os.path.getsize(data), "lmdb": env.info(), "psize": env.stat()["psize"],
                "max_readers": env.max_readers()}


class Reader:
    """Reads inside one read transaction (from Store.read())."""

    def __init__(self, store: Store, txn):
        self._store, self._txn = store, txn

    def databases(self) -> list[str]:
        return [n for n in DATABASES if n in self._store._dbs]

    def _db(self, db: str):
        try:
            return self._store._dbs[db]
        except KeyError:
            raise StoreError(f"unknown database {db!r} (one of {', '.join(DATABASES)})") from None

    def stat(self, db: str) -> dict:
        return self._txn.stat(self._db(db))

    def get(self, db: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._db(db))

    def items(self, db: str, prefix: bytes = b"", reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, raw value) in key order under a byte prefix; constant memory."""
        cur = self._txn.cursor(self._db(db))
        if reverse:
            if prefix:
                if cur.set_range(prefix + b"\xff" * 64):
                    ok = cur.prev()
                else:
                    ok = cur.last()
            else:
                ok = cur.last()
            while ok and cur.key().startswith(prefix):
                yield cur.key(), cur.value()
                ok = cur.prev()
        else:
            ok = cur.set_range(prefix) if prefix else cur.first()
            while ok and cur.key().startswith(prefix):
                yield cur.key(), cur.value()
                ok = cur.next()

    def last(self, db: str, prefix: str):
        """The decoded newest record under prefix in a sequenced database, or None."""
        for _, raw in self.items(db, prefix_bytes(prefix), reverse=True):
            return orjson.loads(raw)
        return None

    def last_seq(self, db: str, prefix: str) -> int:
        """The newest committed seq under prefix (0 if none)."""
        return _last_seq(self._txn.cursor(self._db(db)), prefix_bytes(prefix))

    def records(self, db: str, prefix: str, after_seq: int = 0) -> Iterator[tuple[int, object]]:
        """(seq, decoded record) under prefix, oldest first, seq > after_seq."""
        p = prefix_bytes(prefix)
        cur = self._txn.cursor(self._db(db))
        ok = cur.set_range(p + (after_seq + 1).to_bytes(_SEQ, "big"))
        while ok and cur.key().startswith(p):
            yield int.from_bytes(cur.key()[-_SEQ:], "big"), orjson.loads(cur.value())
            ok = cur.next()

    def prefixes(self, db: str) -> list[str]:
        """The distinct prefixes (roles) of a sequenced database, one seek each."""
        cur = self._txn.cursor(self._db(db))
        out, ok = [], cur.first()
        while ok:
            p = cur.key()[:-_SEQ]
            out.append(p[:-1].decode(errors="replace"))
            ok = cur.set_range(p + b"\xff" * _SEQ)
            if ok and cur.key().startswith(p):
                ok = cur.next()
        return out

    def schema(self) -> dict:
        meta = self._db("meta")
        return {k.decode(errors="replace"): orjson.loads(v) for k, v in self._txn.cursor(meta)}


def _reason(e: lmdb.Error) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text else text


# Every open Store closes before a fork and reopens after it in the parent (see the docstring).
_OPEN_STORES: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _before_fork() -> None:
    for store in list(_OPEN_STORES):
        if not store._closed and store._env is not None:
            store._before_fork()


def _after_fork_parent() -> None:
    for store in list(_OPEN_STORES):
        store._after_fork_parent()


def _after_fork_child() -> None:
    for store in list(_OPEN_STORES):
        store._after_fork_child()
    _OPEN_STORES.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                    after_in_child=_after_fork_child)
