"""The engine's durable state: one LMDB environment that every role process writes into.

    role process (opens its own Store after fork)                 LMDB environment (a directory)
    ─────────────────────────────────────────────                 ──────────────────────────────
    Checkpointer.save(states, budget) ──┐ inline: only if the writer lock is free now
                                        ├───────────────────────► one write txn ──► data.mdb
    append_discovery (buffered) ────────┤ otherwise, or late:                         meta tasks
    log_event / append / flush ─────────┴─► writer thread ── batch of jobs ─► one write txn  discoveries
                                            (group commit; grows the map; periodic fsync)  events inbox …
    supervisor: reader_check() after each reaped child                              lock.mdb (readers)
    `syndicate snapshot` (another process): ReadOnlyStore, read txns only ─────────►

The package, one job per module (each imports only modules above it at module level):
    keys.py    database names, key layout (`prefix NUL seq`), encoding, refusing secrets
    schema.py  opening the environment: file checks, schema version, migrations, databases
    jobs.py    WriteJob (a transaction to wait for) and Gate (shared txns, exclusive resize)
    fork.py    the set of open stores and the os.register_at_fork hooks around every fork
    reader.py  Store (open, read, close, fork), ReadOnlyStore, Reader (queries in a read txn)
    records.py the write API of records (checkpoints, discoveries, append, delete_through, events)
    writer.py  WritableStore: that API, inline commits, the writer thread, map growth, sync

Store.open(path) returns a WritableStore (engine processes); Store.open(path, readonly=True)
or ReadOnlyStore.open(path) a ReadOnlyStore, which has no write method and never writes the
data file (`syndicate snapshot`, `status --tasks`).

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
Whatever the setting, `sync()` (the webhook receiver's group commit, once per batch of
`inbox` deliveries: roles/groupcommit.py) and `append(..., durable=True)` fsync before they
return, so an acknowledged delivery survives a power loss.
"""
from __future__ import annotations

from .jobs import WriteJob
from .keys import DATABASES, SEQ_DATABASES, StoreError, key_text, parse_key, prefix_bytes, seq_key
from .reader import ReadOnlyStore, Reader, Store
from .schema import (APPLICATION, DEFAULT_MAP_SIZE, DEFAULT_MAX_READERS, DURABILITY, MAX_MAP_SIZE,
                     SCHEMA_VERSION)
from .writer import WRITER_LOCK, StoreStatistics, WritableStore

__all__ = ["APPLICATION", "DATABASES", "DEFAULT_MAP_SIZE", "DEFAULT_MAX_READERS", "DURABILITY",
           "MAX_MAP_SIZE", "SCHEMA_VERSION", "SEQ_DATABASES", "WRITER_LOCK", "ReadOnlyStore",
           "Reader", "Store", "StoreError", "StoreStatistics", "WritableStore", "WriteJob",
           "key_text", "parse_key", "prefix_bytes", "seq_key"]
