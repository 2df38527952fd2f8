"""The webhook hand-off: from the durable LMDB inbox to the chain monitors, one writer per ring.

    Moralis ──POST──► receiver, HTTP thread: size, x-signature, shape ─► inbox (LMDB, fsynced) ─► 200
                      receiver, role loop (process-inbox task):
                        inbox records after its cursor ─► logs ─► SeenLogs: drop a log already
                        handed on (the confirmed copy of an unconfirmed one, a retry, either order)
                        ─► out.<receiver> ring: hand-off records ─► signal the ring's readers
    monitor-<chain>, on that signal:  hook_logs(store, record) ─► logs ─► PoolBook.apply(log, t_origin)

A hand-off record is small and names logs instead of carrying them (a V3 Swap log is ~700 bytes
of JSON; a ring slot carries 496): the inbox is the one copy of what Moralis sent, and the
monitor reads the logs back from it (one LMDB read transaction, no write):

    {"type": "hook", "chain": "polygon", "inbox": 42, "part": 0, "parts": 1,
     "logs": [0, 2, 3], "confirmed": false, "t_origin": <CLOCK_MONOTONIC ns the bytes arrived>}

`logs` are indexes into the delivery's `logs[]`; a delivery with many new logs is split into
`parts` records.  A restarted receiver finds the last record it published still in its ring
(`last_handoff`) and continues after it, so a SIGKILL between publishing and committing its
cursor neither loses nor repeats a hand-off.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

import orjson

from engine.core.store import seq_key

from . import moralis
from .moralis import Delivery

INBOX_PREFIX = "moralis"          # inbox keys: moralis/<seq>
HANDOFF_BYTES = 400               # a record's JSON, before t_written; a slot carries 496


def inbox_record(d: Delivery, body: bytes, t_origin: int) -> dict:
    """What the inbox keeps of an accepted delivery: the exact body Moralis signed, and a
    summary `syndicate snapshot … ls inbox` can show without decoding it."""
    return {"kind": "test" if d.test else "delivery", "chain": d.chain,
            "chain_id": hex(d.chain_id) if d.chain_id is not None else None,
            "confirmed": d.confirmed, "block": d.block_number, "logs": len(d.logs),
            "stream": d.stream_id, "tag": d.tag, "retries": d.retries, "t_origin": t_origin,
            "received_ns": time.time_ns(), "body": body.decode()}


class SeenLogs:
    """The (chain, block hash, tx, log index) keys already handed on, the newest `capacity`.
    Kept as 16-byte BLAKE2b digests: 200 000 keys take ~30 MB instead of ~95 MB as tuples of
    strings (measured), and a false "seen" needs a 128-bit collision."""

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def _digest(key: tuple) -> bytes:
        return hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=16).digest()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple) -> bool:
        return self._digest(key) in self._keys

    def add(self, key: tuple) -> bool:
        """True if the key is new (and now remembered)."""
        k = self._digest(key)
        if k in self._keys:
            return False
        self._keys[k] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    def new_logs(self, d: Delivery) -> list[int]:
        """Indexes of the delivery's logs not seen before; they are remembered."""
        return [i for i, lg in enumerate(d.logs) if self.add(moralis.log_key(d.chain, lg))]


def handoff_records(seq: int, d: Delivery, indexes: list[int], t_origin: int) -> list[dict]:
    """The ring records handing on logs `indexes` of inbox delivery `seq`."""
    head = {"type": "hook", "chain": d.chain, "inbox": seq, "part": 0, "parts": 1,
            "logs": [], "confirmed": d.confirmed, "t_origin": t_origin}
    room = HANDOFF_BYTES - len(orjson.dumps(head)) - 8
    chunks, cur, used = [], [], 0
    for i in indexes:
        n = len(str(i)) + 1
        if cur and used + n > room:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        chunks.append(cur)
    return [{**head, "part": k, "parts": len(chunks), "logs": c} for k, c in enumerate(chunks)]


def last_handoff(ring) -> tuple[int, int, int] | None:
    """(inbox seq, part, parts) of the newest hand-off record still in `ring`, or None."""
    for seq in range(ring.published - 1, max(-1, ring.published - ring.capacity - 1), -1):
        raw = ring.peek(seq)
        if raw is None:
            return None
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("type") == "hook":
            return int(rec["inbox"]), int(rec["part"]), int(rec["parts"])
    return None


class HookReader:
    """For a monitor: hand-off records -> the logs they name, read from the inbox.  Keeps the
    last decoded delivery (a delivery split into parts arrives as consecutive records)."""

    def __init__(self, store):
        self.store = store
        self._last: tuple[int, Delivery] | None = None

    def delivery(self, seq: int) -> Delivery | None:
        if self._last and self._last[0] == seq:
            return self._last[1]
        with self.store.read() as r:
            raw = r.get("inbox", seq_key(INBOX_PREFIX, seq))
        if raw is None:
            return None
        d = moralis.parse(orjson.loads(raw)["body"].encode())
        self._last = (seq, d)
        return d

    def logs(self, record: dict) -> list[dict]:
        """The eth_getLogs-shaped logs a hand-off record names (each log dict is a copy), with
        the record's `chain` and `t_origin` to give PoolBook.apply."""
        d = self.delivery(int(record["inbox"]))
        if d is None:
            return []
        return [dict(d.logs[i]) for i in record["logs"]]


def hook_logs(store, record: dict) -> list[dict]:
    """One-shot form of HookReader(store).logs(record)."""
    return HookReader(store).logs(record)


def orphaned(log: dict, held: dict[int, str]) -> bool:
    """Whether a webhook's log names a block height that the follower holds (`held`: number ->
    the node's hash) under another hash: a block the chain has replaced, not to be applied.
    A malformed log is not orphaned (the pool book counts it as malformed)."""
    try:
        n = log["blockNumber"]
        n, h = (int(n, 16) if isinstance(n, str) else int(n)), str(log["blockHash"]).lower()
    except (KeyError, TypeError, ValueError):
        return False
    mine = held.get(n)
    return mine is not None and mine.lower() != h
