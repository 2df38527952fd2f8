"""Opening the LMDB environment: check the files, open them read-only or writable, check the
schema (create or migrate it when writable), and open the databases.

Everything a file can be is checked before a page of it is touched: a missing or foreign
directory, a data.mdb too short for LMDB, one truncated below what its own metadata claims (a
mapped page past the end of a file is a SIGBUS, not an exception), an LMDB environment of some
other application, and a schema version this code does not know.  Each is a StoreError that
names the path.  `meta` holds `application`, `schema_version` and `created_ns`.
"""
from __future__ import annotations

import os
import time

import lmdb
import orjson

from .keys import DATABASES, StoreError

SCHEMA_VERSION = 1
APPLICATION = "syndicate"
DURABILITY = ("process", "periodic", "power")

DEFAULT_MAP_SIZE = 4 << 30      # virtual address space only: the file grows with the data
MAX_MAP_SIZE = 1 << 40
DEFAULT_MAX_READERS = 1024      # a SIGKILLed role leaves its slot until reader_check()
MAX_DBS = 16

# Migrations from an older schema: {from_version: function(txn, dbs)} each moving one step up.
MIGRATIONS: dict[int, object] = {}


def check_options(durability: str, map_size: int, checkpoint_history: int = 1,
                  discovery_batch: int = 1) -> None:
    if durability not in DURABILITY:
        raise StoreError(f"durability {durability!r}: one of {', '.join(DURABILITY)}")
    if checkpoint_history < 1 or discovery_batch < 1 or map_size < 1 << 16:
        raise StoreError("checkpoint_history and discovery_batch must be >= 1, map_size >= 64 KiB")


def reason(e: lmdb.Error) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text else text


def open_readonly(path: str, map_size: int):
    """(env, {name: db}, schema_version) of an existing store, never writing its data file.
    It takes a reader slot in lock.mdb like any reader; if lock.mdb is absent no engine can be
    running, so it is not created."""
    check_files(path)
    lock = os.path.exists(os.path.join(path, "lock.mdb"))
    # A map as large as the engine's, so a live writer rarely outgrows it; if it does between
    # LMDB sizing the map and py-lmdb's first read, open again.
    size = max(map_size, os.path.getsize(os.path.join(path, "data.mdb")))
    for _ in range(100):
        try:
            # max_readers=1: an existing lock file keeps its size (LMDB only grows it).
            env = lmdb.open(path, readonly=True, lock=lock, create=False, max_dbs=MAX_DBS,
                            max_readers=1, map_size=size)
            break
        except lmdb.MapResizedError:
            continue
        except lmdb.Error as e:
            raise StoreError(f"{path}: not a readable LMDB environment ({reason(e)})") from None
    else:
        raise StoreError(f"{path}: the map keeps growing under us; try again")
    try:
        check_truncation(env, path)
        dbs, version = _adopting(env, path, lambda: _open_dbs_readonly(env, path))
    except BaseException:
        env.close()
        raise
    return env, dbs, version


def open_writable(path: str, durability: str, map_size: int, max_readers: int):
    """(env, {name: db}, schema_version), creating the store or migrating its schema."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"{path}: exists and is not a directory")
    data = os.path.join(path, "data.mdb")
    if os.path.isfile(data) and 0 < os.path.getsize(data) < 2 * 4096:
        raise StoreError(f"{data}: {os.path.getsize(data)} bytes, too short for an LMDB file")
    flags = dict(sync=durability == "power", metasync=durability == "power")
    try:
        env = lmdb.open(path, max_dbs=MAX_DBS, map_size=map_size, max_readers=max_readers,
                        max_spare_txns=0, create=True, **flags)
    except lmdb.Error as e:
        raise StoreError(f"{path}: cannot open the LMDB environment ({reason(e)})") from None
    try:
        check_truncation(env, path)
        env.reader_check()
        dbs, version = _adopting(env, path, lambda: _open_dbs_writable(env, path))
    except BaseException:
        env.close()
        raise
    return env, dbs, version


def _adopting(env, path: str, fn):
    """fn(), again after adopting the map size if a live writer grew the file meanwhile."""
    for _ in range(100):
        try:
            return fn()
        except lmdb.MapResizedError:
            env.set_mapsize(0)
        except StoreError as e:
            if "MDB_MAP_RESIZED" not in str(e):
                raise
            env.set_mapsize(0)
    raise StoreError(f"{path}: the map keeps growing under us; try again")


def check_files(path: str) -> None:
    if not os.path.exists(path):
        raise StoreError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise StoreError(f"{path}: not a directory (a store is a directory holding data.mdb)")
    data = os.path.join(path, "data.mdb")
    if not os.path.isfile(data):
        raise StoreError(f"{path}: no data.mdb, not an LMDB environment")
    if os.path.getsize(data) < 2 * 4096:
        raise StoreError(f"{data}: {os.path.getsize(data)} bytes, too short for an LMDB file")


def check_truncation(env, path: str) -> None:
    # Pages past the end of a mapped file are a SIGBUS, not an exception: refuse a file
    # shorter than its own metadata says, before any page is touched.
    info, psize = env.info(), env.stat()["psize"]
    need = (info["last_pgno"] + 1) * psize
    data = os.path.join(path, "data.mdb")
    have = os.path.getsize(data)
    if have < need:
        raise StoreError(f"{data}: truncated ({have} bytes, its metadata needs {need})")


def _read_schema(path: str, txn, meta) -> int | None:
    raw = txn.get(b"schema_version", db=meta)
    if raw is None:
        return None
    try:
        version = orjson.loads(raw)
        app = txn.get(b"application", db=meta)
        app = orjson.loads(app) if app is not None else None
    except orjson.JSONDecodeError:
        raise StoreError(f"{path}: meta/schema_version is not JSON, not a syndicate store") from None
    if app != APPLICATION or not isinstance(version, int):
        raise StoreError(f"{path}: an LMDB environment of {app!r}, not a syndicate store")
    return version


def _check_version(path: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this code "
                         f"knows ({SCHEMA_VERSION}); upgrade syndicate to read it")


def _open_dbs_readonly(env, path: str) -> tuple[dict, int]:
    with env.begin() as txn:
        names = {k for k, _ in txn.cursor()}
    if b"meta" not in names:
        what = "an empty LMDB environment" if not names else "a foreign LMDB environment"
        raise StoreError(f"{path}: {what} (no meta database), not a syndicate store")
    # Handles opened inside a read transaction die with it (py-lmdb aborts read txns),
    # so open them on their own.
    try:
        dbs = {"meta": env.open_db(b"meta", create=False)}
        for name in DATABASES[1:]:
            if name.encode() in names:
                dbs[name] = env.open_db(name.encode(), create=False)
    except lmdb.Error as e:
        raise StoreError(f"{path}: unusable databases, not a syndicate store ({reason(e)})") from None
    with env.begin() as txn:
        version = _read_schema(path, txn, dbs["meta"])
        if version is None:
            raise StoreError(f"{path}: meta has no schema_version, not a syndicate store")
        _check_version(path, version)
        if version < SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {version} is older than this code "
                             f"reads ({SCHEMA_VERSION}); open it once with the engine to migrate")
    return dbs, version


def _open_dbs_writable(env, path: str) -> tuple[dict, int]:
    # One write transaction checks, creates and migrates, so roles that open a new store
    # at the same moment see either nothing or everything.
    with env.begin(write=True) as txn:
        names = {k for k, _ in txn.cursor()}
        ours = {n.encode() for n in DATABASES}
        if names and b"meta" not in names:
            raise StoreError(f"{path}: a foreign LMDB environment (databases "
                             f"{sorted(n.decode(errors='replace') for n in names)[:5]}), "
                             "not a syndicate store")
        meta = env.open_db(b"meta", txn=txn)
        version = _read_schema(path, txn, meta)
        dbs = {name: env.open_db(name.encode(), txn=txn) for name in DATABASES}
        if version is None:
            if names - ours:
                raise StoreError(f"{path}: a foreign LMDB environment, not a syndicate store")
            txn.put(b"application", orjson.dumps(APPLICATION), db=meta)
            txn.put(b"created_ns", orjson.dumps(time.time_ns()), db=meta)
            version = SCHEMA_VERSION
            txn.put(b"schema_version", orjson.dumps(version), db=meta)
        _check_version(path, version)
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreError(f"{path}: schema version {version} is older than "
                                 f"{SCHEMA_VERSION} and no migration from it exists")
            step(txn, dbs)
            version += 1
            txn.put(b"schema_version", orjson.dumps(version), db=meta)
    return dbs, version
