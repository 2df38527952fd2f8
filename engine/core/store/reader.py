"""Reading the store: `Store` (what every handle on the environment does: open, read, close,
survive a fork), `ReadOnlyStore` (what `syndicate snapshot` and `status --tasks` open beside a
running engine) and `Reader` (the queries inside one read transaction).

`Store.open(path)` returns a WritableStore (engine/core/store/writer.py), the handle of an
engine process; `Store.open(path, readonly=True)`, or `ReadOnlyStore.open(path)`, one that has
no write method at all and never writes the data file.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import lmdb
import orjson

from . import fork, schema
from .jobs import Gate
from .keys import DATABASES, SEQ, StoreError, last_seq, prefix_bytes, seq_bytes, seq_of
from .schema import DEFAULT_MAP_SIZE, DEFAULT_MAX_READERS, MAX_MAP_SIZE


class Store:
    """One process's handle on the environment.  Open with Store.open(); close() flushes."""
    readonly: bool

    def __init__(self):  # use Store.open
        raise TypeError("use Store.open(path, ...)")

    @classmethod
    def open(cls, path: str | os.PathLike, *, durability: str = "process",
             map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False,
             max_readers: int = DEFAULT_MAX_READERS, sync_interval_s: float = 1.0,
             discovery_flush_s: float = 1.0, discovery_batch: int = 64,
             discoveries_with_checkpoints: bool = False,
             checkpoint_history: int = 16, max_map_size: int = MAX_MAP_SIZE) -> "Store":
        """Open (creating it unless readonly) the environment in directory `path`: a
        WritableStore, or with readonly=True a ReadOnlyStore.  Raises StoreError for a path
        that is not a syndicate store, a truncated file, or a schema this code does not know."""
        schema.check_options(durability, map_size, checkpoint_history, discovery_batch)
        if readonly:
            return ReadOnlyStore.open(path, map_size=map_size)
        # writer.py builds on this module (WritableStore is a Store), so the base names its
        # writable subclass only when asked for one: a module-level import would be a cycle.
        from .writer import WritableStore
        return WritableStore.open(
            path, durability=durability, map_size=map_size, max_readers=max_readers,
            sync_interval_s=sync_interval_s, discovery_flush_s=discovery_flush_s,
            discovery_batch=discovery_batch, discoveries_with_checkpoints=discoveries_with_checkpoints,
            checkpoint_history=checkpoint_history, max_map_size=max_map_size)

    def _init(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._gate = Gate()
        self._stats = dict(commits=0, inline_commits=0, jobs=0, grows=0, resizes_adopted=0, syncs=0)
        self._env = None
        self._dbs: dict = {}
        self.schema_version = 0
        self._closed = False
        self._forking = False

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
                        yield Reader(self._dbs, txn)
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

    def info(self) -> dict:
        """Environment figures for `snapshot info`."""
        env = self._env
        data = os.path.join(self.path, "data.mdb")
        return {"path": self.path, "schema_version": self.schema_version,
                "file_bytes": os.path.getsize(data), "lmdb": env.info(), "psize": env.stat()["psize"],
                "max_readers": env.max_readers()}

    def copy(self, dest: str, *, compact: bool = False) -> None:
        """A consistent copy of the environment into the empty directory dest (LMDB's own
        copy: a read transaction, so it works beside a live writer)."""
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        with self._gate.shared():
            self._env.copy(dest, compact=compact)

    # -- process life -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the environment (a WritableStore flushes, stops its writer and fsyncs first).
        Repeat calls do nothing."""
        if self._closed:
            return
        self._closed = True
        fork.untrack(self)
        self._disconnect(sync=True)

    def _disconnect(self, sync: bool) -> None:
        if self._env is not None:
            with self._gate.exclusive():
                if sync and not self.readonly:
                    with contextlib.suppress(lmdb.Error):
                        self._env.sync(True)
                self._env.close()
                self._env = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _before_fork(self) -> None:
        if self._closed or self._env is None:
            return
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
        # process.  This object is dead here.
        self._closed = True
        env, self._env = self._env, None
        if env is not None and self._forking:
            with contextlib.suppress(lmdb.Error):
                env.close()
        self._forking = False
        self._gate = Gate()


class ReadOnlyStore(Store):
    """A store opened only to read: `syndicate snapshot`, `status --tasks`, tests that look."""
    readonly = True

    @classmethod
    def open(cls, path: str | os.PathLike, *, map_size: int = DEFAULT_MAP_SIZE) -> "ReadOnlyStore":
        """Open an existing store without writing its data file; works beside a live engine.
        map_size: at least the engine's, so its growth rarely forces a reopen."""
        self = object.__new__(cls)
        self._init(path)
        self._env, self._dbs, self.schema_version = schema.open_readonly(self.path, map_size)
        fork.track(self)
        return self


class Reader:
    """Reads inside one read transaction (from Store.read())."""

    def __init__(self, dbs: dict, txn):
        self._dbs, self._txn = dbs, txn

    def databases(self) -> list[str]:
        return [n for n in DATABASES if n in self._dbs]

    def _db(self, db: str):
        try:
            return self._dbs[db]
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
        return last_seq(self._txn.cursor(self._db(db)), prefix_bytes(prefix))

    def records(self, db: str, prefix: str, after_seq: int = 0) -> Iterator[tuple[int, object]]:
        """(seq, decoded record) under prefix, oldest first, seq > after_seq."""
        p = prefix_bytes(prefix)
        cur = self._txn.cursor(self._db(db))
        ok = cur.set_range(p + seq_bytes(after_seq + 1))
        while ok and cur.key().startswith(p):
            yield seq_of(cur.key()), orjson.loads(cur.value())
            ok = cur.next()

    def raw_after(self, db: str, prefix: str, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """(seq, raw value) under prefix, oldest first, seq > after_seq, by one seek: for a
        reader that decodes (and survives) each record itself."""
        p = prefix_bytes(prefix)
        cur = self._txn.cursor(self._db(db))
        ok = cur.set_range(p + seq_bytes(after_seq + 1))
        while ok and cur.key().startswith(p):
            yield seq_of(cur.key()), cur.value()
            ok = cur.next()

    def prefixes(self, db: str) -> list[str]:
        """The distinct prefixes (roles) of a sequenced database, one seek each."""
        cur = self._txn.cursor(self._db(db))
        out, ok = [], cur.first()
        while ok:
            p = cur.key()[:-SEQ]
            out.append(p[:-1].decode(errors="replace"))
            ok = cur.set_range(p + b"\xff" * SEQ)
            if ok and cur.key().startswith(p):
                ok = cur.next()
        return out

    def schema(self) -> dict:
        meta = self._db("meta")
        return {k.decode(errors="replace"): orjson.loads(v) for k, v in self._txn.cursor(meta)}
