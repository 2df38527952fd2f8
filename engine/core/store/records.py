"""The write API of the store's records, a part of `WritableStore` (writer.py): checkpoints,
discoveries, sequenced records (append, append_many, delete_through) and events.  Each method
encodes now and builds the function of a write transaction that writer.py commits (inline, or
by the writer thread)."""
from __future__ import annotations

import os
import time

from .jobs import WriteJob
from .keys import (SEQ_DATABASES, StoreError, encode, last_seq, prefix_bytes, refuse_secrets,
                   seq_bytes, seq_of)


class RecordWrites:
    """Mixed into WritableStore, whose _alive, _dbs, _cv, _pending, _submit, _take_pending and
    write it uses."""

    def save_checkpoint(self, role: str, states: dict) -> int:
        """Commit {task: state} for role (and every buffered discovery); wait; return its seq."""
        self._alive()
        return self._submit([self.checkpoint_op(role, states)]).result()[-1]

    def append_discovery(self, role: str, record) -> None:
        """Buffer a discovery; committed within discovery_flush_s, when discovery_batch are
        buffered, with the next checkpoint, or on flush().  Never blocks on the disk."""
        self._alive()
        key = prefix_bytes(role)
        refuse_secrets(f"discovery of {role}", record)
        raw = encode(f"discovery of {role}", record)
        with self._cv:
            self._pending.setdefault(key, []).append(raw)
            self._pending_n += 1
            if self._pending_n >= self.discovery_batch and not self.discoveries_with_checkpoints:
                self._cv.notify()

    def append(self, db: str, prefix: str, record, *, durable: bool = False) -> int:
        """Commit one record under prefix in a sequenced database; wait; return its seq.
        durable=True also fsyncs before returning (inbox: durable before acknowledged)."""
        return self.append_job(db, prefix, record, durable=durable).result()[-1]

    def append_job(self, db: str, prefix: str, record, *, durable: bool = False) -> WriteJob:
        """append() without waiting: the writer thread commits it (with whatever else is
        queued: one transaction, one fsync for the lot); job.result()[-1] is the seq, and
        job.add_done_callback tells an event loop when it is committed."""
        self._alive()
        if db not in SEQ_DATABASES:
            raise StoreError(f"append: unknown database {db!r} (one of {', '.join(SEQ_DATABASES)})")
        key = prefix_bytes(prefix)
        refuse_secrets(f"{db} record under {prefix}", record)
        raw = encode(f"{db} record under {prefix}", record)
        dbh = self._dbs[db]

        def op(txn):
            seq = last_seq(txn.cursor(dbh), key) + 1
            txn.put(key + seq_bytes(seq), raw, db=dbh)
            return seq
        return self._submit([op], durable=durable)

    def append_many(self, db: str, prefix: str, records: list, *, inline: bool = True,
                    queue: bool = True) -> WriteJob | None:
        """Records under prefix in one transaction, without waiting: inline if the writer lock
        is free now (and `inline`), else by the writer thread (job.wait() waits; job.result()
        has the seqs), or with queue=False not at all (None: nothing written, try again later)."""
        self._alive()
        if db not in SEQ_DATABASES:
            raise StoreError(f"append_many: unknown database {db!r} (one of {', '.join(SEQ_DATABASES)})")
        key = prefix_bytes(prefix)
        raws = []
        for r in records:
            refuse_secrets(f"{db} record under {prefix}", r)
            raws.append(encode(f"{db} record under {prefix}", r))
        dbh = self._dbs[db]

        def op(txn):
            seq = last_seq(txn.cursor(dbh), key)
            for raw in raws:
                seq += 1
                txn.put(key + seq_bytes(seq), raw, db=dbh)
            return seq
        return self.write([op], inline=inline, queue=queue)

    def delete_through(self, db: str, prefix: str, seq: int, *, limit: int = 256,
                       inline: bool = True, queue: bool = True) -> WriteJob | None:
        """Delete the records under prefix whose seq is <= `seq`, the oldest first, at most
        `limit` in one transaction (as append_many: inline, queued, or None).  job.results[0]
        is how many went.  The newest record under prefix is never deleted, whatever `seq`:
        the next append continues from its seq (keys.last_seq)."""
        self._alive()
        if db not in SEQ_DATABASES:
            raise StoreError(f"delete_through: unknown database {db!r} "
                             f"(one of {', '.join(SEQ_DATABASES)})")
        key, dbh = prefix_bytes(prefix), self._dbs[db]

        def op(txn):
            cur = txn.cursor(dbh)
            through = min(seq, last_seq(txn.cursor(dbh), key) - 1)
            n = 0
            if cur.set_range(key):
                while n < limit and cur.key().startswith(key) and seq_of(cur.key()) <= through:
                    if not cur.delete():
                        break
                    n += 1
            return n
        return self.write([op], inline=inline, queue=queue)

    def log_event(self, kind: str, /, **fields) -> None:
        """Record what the supervisor or watchdog did; committed by the writer thread shortly
        after (flush() waits for it).  Never blocks on the disk."""
        self._alive()
        refuse_secrets(f"event {kind}", fields)
        raw = encode(f"event {kind}", {"kind": kind, "pid": os.getpid(), **fields})
        dbh = self._dbs["events"]

        def op(txn):
            cur = txn.cursor(dbh)
            last = seq_of(cur.key()) if cur.last() else 0
            ts = max(time.time_ns(), last + 1)
            txn.put(seq_bytes(ts), raw, db=dbh)
            return ts
        self._submit([op])

    def checkpoint_op(self, role: str, states: dict):
        """The write of one checkpoint, encoded now (the caller may mutate states right after),
        for write() or join_queued(); its result is the checkpoint's seq."""
        if not isinstance(states, dict):
            raise StoreError(f"checkpoint of {role}: states must be a dict {{task: state}}, "
                             f"not {type(states).__name__}")
        key = prefix_bytes(role)
        body = encode(f"checkpoint of {role}", states)
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
            seq = last_seq(cur, key) + 1
            value = b'{"seq":%d,"time_ns":%d,"states":%s}' % (seq, now, body)
            txn.put(key + seq_bytes(seq), value, db=dbh)
            # Keep the newest `keep`: usually one delete per save.
            if seq > keep and cur.set_range(key):
                while cur.key().startswith(key) and seq_of(cur.key()) <= seq - keep:
                    if not cur.delete():
                        break
            return seq
        return op
