"""What `syndicate bench ring` carries: the pool-update record (engine/chain/records.py) as raw
bytes, orjson or its binary layout, what a reader does with each, and the codec's own cost.

Readers of the binary form compare each record's pool bytes (records.pool_bytes) with the one
pool they watch and decode the ones that match (1 in POOLS), as an agent keeps only its own
pools' replicas; readers of orjson must load every record to know as much.  How far a match is
decoded is `BINARY_DECODE`: "fields" (records.state: flags, block, log index and the state
words, read in place: what a replica update needs) or "dict" (records.decode, the whole dict
orjson would give).  Every transport's readers do the same.
"""
from __future__ import annotations

import time

import orjson

from engine.bench.report import Comparison, Summary
from engine.chain import records

RECORD = records.SIZE
POOLS = 8
CHUNK = 64                     # records per publish_many / put_many
BINARY_DECODE = "fields"       # or "dict": see the docstring (bench ring --binary-decode)


def pool(i: int) -> str:
    return "0x" + (0xC31E54C7A869B9FCBECC14363CF510D1C41FA443 + i).to_bytes(20, "big").hex()


def event(seq: int) -> dict:
    """A v3 swap as the chain monitor publishes it (the pool-update record, records.md)."""
    return {"type": "pool", "chain": "arbitrum", "block": 250_000_000 + seq,
            "block_hash": "0x" + (seq * 0x9E3779B97F4A7C15 + 1).to_bytes(32, "big").hex(),
            "tx": "0x" + (seq * 0xBF58476D1CE4E5B9 + 7).to_bytes(32, "big").hex(),
            "log_index": seq % 7, "pool": pool(seq % POOLS), "kind": "v3", "event": "swap",
            "state": {"sqrt_price_x96": str(4_295_128_739 * 10**20 + seq),
                      "liquidity": str(18_000_000_000_000_000 + seq), "tick": -197_000 + seq % 50},
            "impact_bps": 41 + seq % 30, "interrupt": seq % 3 == 0, "reverted": False,
            "t_origin": 1_700_000_000_000 + seq}


def raw(seq: int) -> bytes:
    return seq.to_bytes(8, "little") + b"r" * (RECORD - 8)


def payloads(kind: str) -> tuple[list | None, list[dict]]:
    """The writer's ready-made records (raw, binary) or None (orjson: dumps in the loop)."""
    events = [event(s) for s in range(CHUNK)]
    if kind == "raw":
        return [raw(s) for s in range(CHUNK)], events
    if kind == "binary":
        return [records.encode(e) for e in events], events
    return None, events


def reader_work(kind: str, reader_index: int):
    """What a reader does with each record it gets (None: nothing, the raw transport)."""
    if kind == "orjson":
        return orjson.loads
    if kind == "binary":
        mine, decode = bytes.fromhex(pool(reader_index % POOLS)[2:]), _decoder()

        def work(rec):
            if rec[20:40] == mine:   # records.pool_bytes, inlined: the reader's filter
                decode(rec)
        return work
    return None


def _decoder():
    if BINARY_DECODE not in ("fields", "dict"):
        raise ValueError(f"BINARY_DECODE={BINARY_DECODE!r}: fields or dict")
    return records.state if BINARY_DECODE == "fields" else records.decode


def block_work(kind: str, reader_index: int):
    """What a ring reader does with each `Block` from `poll_block` (None: nothing, raw): the
    same work as `reader_work`, read in place.  Binary: the records of its pool are found by
    `Block.matching` (bytes.find over the block, not a compare per record) and decoded from a
    view of the block; orjson: every record loaded from a view (no bytes object per record)."""
    if kind == "orjson":
        loads = orjson.loads

        def load_all(block):
            for rec in block:
                loads(rec)
        return load_all
    if kind == "binary":
        mine, size, decode = bytes.fromhex(pool(reader_index % POOLS)[2:]), RECORD, _decoder()
        if decode is records.state:
            def mine_only(block):
                view = block.view
                for i in block.matching(20, mine):   # records.pool_bytes' offset
                    decode(view, block.offset(i))
        else:
            def mine_only(block):
                view = block.view
                for i in block.matching(20, mine):
                    o = block.offset(i)
                    decode(view[o:o + size])
        return mine_only
    return None


def _per_record_us(fn, arg, n: int = 3000) -> list[float]:
    """µs per call, in 10 batches of n/10 (the summary's p50 is the typical batch)."""
    out = []
    for _ in range(10):
        t0 = time.perf_counter_ns()
        for _ in range(n // 10):
            fn(arg)
        out.append((time.perf_counter_ns() - t0) / (n // 10) / 1000)
    return out


def codec_costs() -> list[Comparison]:
    """The binary codec beside orjson on the same pool record, in this process."""
    ev = event(1)
    enc, js = records.encode(ev), orjson.dumps(ev)
    rows = [("encode (the source, once per record)", records.encode, ev, orjson.dumps, ev,
             "records.encode", "orjson.dumps"),
            ("decode to the dict (a reader that keeps it)", records.decode, enc, orjson.loads, js,
             "records.decode", "orjson.loads"),
            ("peek: type, chain, pool, interrupt", records.peek, enc, orjson.loads, js,
             "records.peek", "orjson.loads (the whole record)")]
    return [Comparison(f"codec, pool update: {what}", "us per record",
                       Summary.of(a_label, _per_record_us(a, a_arg)),
                       Summary.of(b_label, _per_record_us(b, b_arg)))
            for what, a, a_arg, b, b_arg, a_label, b_label in rows]
