"""A role's replica of one chain's pool graph: built from a snapshot, kept current by records.

    monitor:  PoolBook.apply(log) ──► pool record ──► events.<chain> ring
                     │ dump_graph(book.graph) (bytes, at ring sequence S: the caller's business)
    role:     load_graph(bytes) ──► PoolGraph ──► apply_record(graph, rec) for every record after S

The record (the shared contract, /work/notes/records.md) carries the pool's whole state after
the log, so applying one is a replacement, never an increment: a record seen twice (at-least-once
ring reads) or a reverted record leaves the same graph as the chain.  V3 records that change the
tick table (mint, burn, their reverts, a created pool) carry the resulting liquidityNet of each
tick they touch in `"ticks": [[tick, "net" | null], ...]` (null: the tick is no longer
initialised), for the same reason: the `delta` field says what the log did, `ticks` what the
table now holds.  `created` records carry the pool's constants in `"info"` and its whole table.

uint values travel as decimal strings (orjson refuses ints over 64 bits), in records and in the
snapshot alike.
"""
from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Iterable

import orjson

from engine.arb.graph import Pool, PoolGraph
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool

SNAPSHOT_VERSION = 1


def state_of(pool: Pool) -> dict:
    """The record's "state" of a pool."""
    if isinstance(pool, V2Pool):
        return {"reserve0": str(pool.reserve0), "reserve1": str(pool.reserve1)}
    return {"sqrt_price_x96": str(pool.sqrt_price_x96), "liquidity": str(pool.liquidity),
            "tick": pool.tick}


def info_of(pool: Pool) -> dict:
    """A pool's constants (what a `created` record and the snapshot carry besides the state)."""
    d = {"kind": pool.kind.value, "token0": pool.token0, "token1": pool.token1, "dex": pool.dex}
    if isinstance(pool, V2Pool):
        d.update(fee_bps=pool.fee_bps, fee_denominator=pool.fee_denominator)
    else:
        d.update(fee=pool.fee, tick_spacing=pool.tick_spacing)
    return d


def ticks_field(changes: dict[int, int | None]) -> list:
    return [[t, None if n is None else str(n)] for t, n in sorted(changes.items())]


def with_ticks(pool: V3Pool, changes: dict[int, int | None]) -> V3Pool:
    """The pool with these ticks set to a liquidityNet (None: no longer initialised)."""
    ticks = dict(pool.ticks)
    for t, net in changes.items():
        if net is None:
            ticks.pop(t, None)
        else:
            ticks[t] = net
    return replace(pool, ticks=ticks, _sorted=())   # _sorted is derived again


def with_state(pool: Pool, state: dict) -> Pool:
    if isinstance(pool, V2Pool):
        return pool.with_reserves(int(state["reserve0"]), int(state["reserve1"]))
    return pool.with_state(int(state["sqrt_price_x96"]), int(state["liquidity"]), int(state["tick"]))


def pool_from(address: str, info: dict, state: dict, ticks: Iterable = ()) -> Pool:
    """A pool from its constants, state and (V3) tick table as records and snapshots carry them."""
    if info["kind"] == "v2":
        return V2Pool(address, info["token0"], info["token1"], int(state["reserve0"]),
                      int(state["reserve1"]), fee_bps=info["fee_bps"],
                      fee_denominator=info.get("fee_denominator", 10_000), dex=info.get("dex", ""))
    if info["kind"] != "v3":
        raise ValueError(f"pool {address}: unknown kind {info['kind']!r}")
    table = {int(t): int(n) for t, n in ticks if n is not None}
    return V3Pool(address, info["token0"], info["token1"], info["fee"], info["tick_spacing"],
                  int(state["sqrt_price_x96"]), int(state["liquidity"]), int(state["tick"]),
                  table, dex=info.get("dex", ""))


def apply_record(graph: PoolGraph, rec: dict) -> Pool | None:
    """Apply one published pool record to a replica; returns the pool's new state, or None when
    the record is not a pool record or names a pool the replica does not hold (the caller counts
    that: it means the replica missed the pool's `created` record).  A malformed pool record is a
    ValueError naming the pool and the field; the replica is unchanged by it."""
    if not isinstance(rec, dict) or rec.get("type") != "pool":
        return None
    try:
        return _apply(graph, rec)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"pool record {rec.get('pool')!r} (block {rec.get('block')}, "
                         f"event {rec.get('event')!r}) is malformed: {e!r}") from e


def _apply(graph: PoolGraph, rec: dict) -> Pool | None:
    address = rec["pool"]
    if rec.get("event") == "created":
        if rec.get("reverted"):   # its creation block is gone (a reorg): so is the pool
            graph.remove(address)
            return None
        pool = pool_from(address, rec["info"], rec["state"], rec.get("ticks", ()))
        graph.add(pool)
        return pool
    pool = graph.pools.get(address)
    if pool is None:
        return None
    pool = with_state(pool, rec["state"])
    if "ticks" in rec and isinstance(pool, V3Pool):
        pool = with_ticks(pool, {int(t): None if n is None else int(n) for t, n in rec["ticks"]})
    graph.update(pool)
    return pool


def dump_graph(graph: PoolGraph) -> bytes:
    """A compact snapshot of a chain's graph (zlib-compressed orjson)."""
    pools = []
    for address, p in graph.pools.items():
        entry = {"address": address, "info": info_of(p), "state": state_of(p)}
        if isinstance(p, V3Pool):
            entry["ticks"] = [[t, str(n)] for t, n in sorted(p.ticks.items())]
        pools.append(entry)
    doc = {"version": SNAPSHOT_VERSION, "max_hops": graph.max_hops,
           "base_tokens": list(graph.base_tokens), "pools": pools}
    return zlib.compress(orjson.dumps(doc), 6)


def load_graph(data: bytes) -> PoolGraph:
    """The graph `dump_graph` wrote; ValueError naming what is wrong with a bad snapshot."""
    try:
        doc = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as e:
        raise ValueError(f"pool graph snapshot is corrupt: {e}") from e
    if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"pool graph snapshot: version {doc.get('version') if isinstance(doc, dict) else '?'}"
                         f", expected {SNAPSHOT_VERSION}")
    graph = PoolGraph(max_hops=doc["max_hops"], base_tokens=doc["base_tokens"])
    for e in doc["pools"]:
        graph.add(pool_from(e["address"], e["info"], e["state"], e.get("ticks", ())))
    return graph
