"""One chain's exact pool state, kept current by logs, with duplicate drop and a per-block undo log.

    load_pools(...) ──► PoolBook.load(loaded)          state at block B; logs <= B are stale
    log (eth_getLogs / eth_subscribe shape) ──► PoolBook.apply(log, t_origin) ──► record | None
         V2 Sync            reserves := the log's                 -> "sync" record
         V2 Swap            nothing (the Sync just before it in the same call carried the state)
                            -> None, counted: so one swap yields exactly one state record
         V3 Swap            sqrtPrice, liquidity, tick := the log's   -> "swap" record
         V3 Initialize      sqrtPrice, tick := the log's          -> "initialize" record
         V3 Mint / Burn     liquidityNet/Gross of both ticks, and `liquidity` when
                            tick_lower <= tick < tick_upper, as UniswapV3Pool._modifyPosition
                            -> "mint" / "burn" record with `delta` and the two ticks' new nets
         PairCreated / PoolCreated   -> {"type": "created", "pool": new address, ...}: not a
                            record to publish; `load_created(rpc, notice)` reads the pool at
                            its creation block into the book and returns the "created" record
    revert_blocks(hashes | from_block) ──► reverted records, state restored (reorg)
    resync(load_pools(...))               a reorg deeper than the undo log (from_block <=
                                          pruned_through) or a drift: fresh state, "resync" records
    prune(finalised_block)                drops undo and dedup memory at or below it

Why a log can be dropped: its (block_hash, tx, log_index) was applied already (duplicate: a
backfill overlapping the stream, both ingress paths); its block is at or below the last pruned
one, or at or before the position already in the pool's state (stale: the state was read at a
later block, or the log is older than one already applied); it is malformed, of an unknown
topic, or of a pool the book does not hold.  Each reason is counted in `statistics()`; nothing
here raises on bad input.

The undo log keeps, per block, every change in the order applied: the pool's previous state
(immutable V2Pool/V3Pool objects: a pointer, not a copy), the previous gross of any tick touched
and the pool's previous position.  A reorg drops a suffix of the chain, so `revert_blocks`
undoes the blocks named and every block held above the lowest of them, newest change first.
A `removed: true` log undoes its pool's changes from that log on (its block is gone, and so is
everything after it) and returns one reverted record with the restored state.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from engine.arb import events as ev
from engine.arb.graph import Pool, PoolGraph
from engine.arb.impact import DEFAULT_THRESHOLD_BPS, move_bps
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool
from engine.chain.pools import Loaded, PoolSpec, load_pools
from engine.chain.replica import info_of, state_of, ticks_field, with_ticks
from engine.chain.rpc import RpcError

_END = 1 << 62          # a log index after every real one: "the whole block"
DEFAULT_REORG_DEPTH = 64


@dataclass
class _Change:
    key: tuple[str, int]                 # (tx, log_index)
    pos: tuple[int, int]                 # (block, log_index)
    pool: str
    prev: Pool                           # the state before the log
    prev_pos: tuple[int, int]
    prev_gross: dict[int, int | None]    # V3 mint/burn: tick -> gross before (None: not initialised)
    record: dict


@dataclass
class _Block:
    number: int
    seen: set = field(default_factory=set)
    changes: list = field(default_factory=list)
    created: list = field(default_factory=list)     # (address, its "created" record)


def _int(x) -> int:
    if isinstance(x, bool):
        raise ValueError("a boolean is not a number")
    return x if isinstance(x, int) else int(x, 16)


def _hex(x) -> str:
    if not isinstance(x, str) or not x.startswith("0x"):
        raise ValueError(f"not 0x-hex: {x!r}")
    return x.lower()


def _impact(prev: Pool, new: Pool) -> int:
    """Floored bps between two states (0 when the previous price is zero: nothing to compare)."""
    if isinstance(prev, V2Pool):
        if prev.reserve0 == 0 or prev.reserve1 == 0 or new.reserve0 == 0:
            return 0
        return move_bps(prev.reserve1, prev.reserve0, new.reserve1, new.reserve0)[0]
    if prev.sqrt_price_x96 == 0:
        return 0
    return move_bps(prev.sqrt_price_x96 ** 2, 1, new.sqrt_price_x96 ** 2, 1)[0]


class PoolBook:
    def __init__(self, chain: str, graph: PoolGraph | None = None, *,
                 threshold_bps: int = DEFAULT_THRESHOLD_BPS, reorg_depth: int = DEFAULT_REORG_DEPTH,
                 factories: Iterable[str] = ()):
        if reorg_depth < 1:
            raise ValueError(f"reorg_depth must be >= 1 (got {reorg_depth})")
        self.chain = chain
        self.graph = graph if graph is not None else PoolGraph()
        self.threshold_bps = threshold_bps
        self.reorg_depth = reorg_depth
        self.factories = {f.lower() for f in factories}   # empty: accept creations from anyone
        self.gross: dict[str, dict[int, int]] = {}
        self._pos: dict[str, tuple[int, int]] = {}
        self._blocks: dict[str, _Block] = {}
        self.pruned_through = -1
        self.head = -1                  # the highest block number applied (or loaded)
        self.counts: Counter = Counter()
        self.load_errors: dict[str, str] = {}     # new pools that could not be read, and why

    # ---- state from the chain
    def load(self, loaded: Loaded) -> None:
        """Pools read at `loaded.block`: logs at or before it are already in their state."""
        for address, pool in loaded.pools.items():
            self.graph.update(pool)
            if address in loaded.gross:
                self.gross[address] = dict(loaded.gross[address])
            self._pos[address] = (loaded.block, _END)
        self.head = max(self.head, loaded.block)

    def resync(self, loaded: Loaded, t_origin: int = 0) -> list[dict]:
        """Replace pools' state with a fresh read (after a reorg deeper than the undo log, or a
        drift): one "resync" record per pool that differed, its whole tick table diffed.  The
        undo log at and below `loaded.block` is dropped: those blocks can no longer be undone."""
        self.prune(loaded.block)
        out = []
        for address, pool in loaded.pools.items():
            old = self.graph.pools.get(address)
            if old is not None:      # the book's constants (dex, V2 fee) stay; the state is new
                pool = (old.with_reserves(pool.reserve0, pool.reserve1) if isinstance(old, V2Pool)
                        else with_ticks(old, {t: None for t in old.ticks} | dict(pool.ticks))
                        .with_state(pool.sqrt_price_x96, pool.liquidity, pool.tick))
            self._pos[address] = (loaded.block, _END)
            if address in loaded.gross:
                self.gross[address] = dict(loaded.gross[address])
            if old is None or old == pool:
                if old is None:
                    self.graph.add(pool)
                continue
            self.graph.update(pool)
            rec = self._record(loaded.block, "", "", 0, pool, "resync", _impact(old, pool), t_origin)
            if isinstance(pool, V3Pool):
                rec["ticks"] = ticks_field({t: pool.ticks.get(t) for t in set(old.ticks) | set(pool.ticks)
                                            if old.ticks.get(t) != pool.ticks.get(t)})
            out.append(rec)
            self.counts["resync"] += 1
        self.head = max(self.head, loaded.block)
        return out

    def specs(self, addresses: Iterable[str] | None = None) -> list[PoolSpec]:
        """What load_pools needs to re-read these pools (default: all) as the book knows them."""
        pools = self.graph.pools
        return [PoolSpec(a, pools[a].kind.value, pools[a].dex, getattr(pools[a], "fee_bps", None))
                for a in (pools if addresses is None else addresses) if a in pools]

    def add_pool(self, pool: Pool, block: int, gross: dict[int, int] | None = None,
                 notice: dict | None = None, t_origin: int = 0) -> dict:
        """A new pool read at `block`: joins the graph; returns its "created" record (with the
        block/tx/log of the creation `notice` when given)."""
        self.load(Loaded(block, {pool.address: pool}, {pool.address: gross} if gross else {}))
        n = notice or {}
        rec = self._record(n.get("block", block), n.get("block_hash", ""), n.get("tx", ""),
                           n.get("log_index", 0), pool, "created", 0, t_origin)
        rec["info"] = info_of(pool)
        if isinstance(pool, V3Pool):
            rec["ticks"] = ticks_field(dict(pool.ticks))
        b = self._blocks.get(n.get("block_hash", ""))
        if b is not None:        # a reorg that drops the creation block drops the pool too
            b.created.append((pool.address, rec))
        return rec

    def seed(self, pool: Pool, block: int, log_index: int, gross: dict[int, int] | None = None) -> None:
        """A pool whose state is known just after log (block, log_index) (a replay seeds a pool
        from the first state its logs reveal): that log and older ones are stale, later ones
        of the same block apply."""
        self.load(Loaded(block, {pool.address: pool}, {pool.address: gross} if gross else {}))
        self._pos[pool.address] = (block, log_index)

    def load_created(self, rpc, notice: dict, t_origin: int = 0) -> dict | None:
        """Read the pool a `created` notice names, at its creation block, into the book; its
        "created" record, or None (counted, the reason in `load_errors`) when it cannot be read."""
        address = notice["pool"]
        try:
            got = load_pools(rpc, [PoolSpec(address, notice.get("kind"))], notice["block"])
        except RpcError as e:  # the endpoint itself failed: the caller may retry
            got = Loaded(notice["block"], errors={address: str(e)})
        if address not in got.pools:
            self.counts["created_load_failed"] += 1
            self.load_errors[address] = got.errors.get(address, "not loaded")
            return None
        return self.add_pool(got.pools[address], got.block, got.gross.get(address), notice, t_origin)

    # ---- logs
    def apply(self, log: dict, t_origin: int) -> dict | None:
        try:
            address = _hex(log["address"])
            topics = [_hex(t) for t in log.get("topics") or ()]
            data = log.get("data", "0x")
            if not isinstance(data, str):
                raise ValueError("data is not a string")
            number, bhash = _int(log["blockNumber"]), _hex(log["blockHash"])
            key = (_hex(log["transactionHash"]), _int(log["logIndex"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            self.counts["malformed"] += 1
            return None
        if log.get("removed"):
            return self._removed(bhash, key, t_origin)
        block = self._blocks.get(bhash)
        if block is not None and key in block.seen:
            self.counts["duplicate"] += 1
            return None
        if number <= self.pruned_through:
            self.counts["stale"] += 1
            return None
        try:
            e = ev.decode(topics, data)
        except ValueError:
            self.counts["bad_data"] += 1
            return None
        if e is None:
            self.counts["unknown_topic"] += 1
            return None
        if isinstance(e, (ev.PairCreated, ev.PoolCreated)):
            return self._created(e, address, number, bhash, key, t_origin)
        pool = self.graph.pools.get(address)
        if pool is None:
            self.counts["unwatched"] += 1
            return None
        if (isinstance(pool, V2Pool)) != isinstance(e, (ev.V2Sync, ev.V2Swap)):
            self.counts["kind_mismatch"] += 1
            return None
        pos = (number, key[1])
        if pos <= self._pos.get(address, (-1, -1)):
            self.counts["stale"] += 1
            return None
        block = self._block(bhash, number)
        block.seen.add(key)
        if isinstance(e, ev.V2Swap):
            self.counts["v2_swap_folded"] += 1      # its Sync came just before and carried it
            return None
        rec = self._change(block, e, pool, address, number, bhash, key, t_origin)
        if rec is not None:
            self.counts[rec["event"]] += 1
        return rec

    def _block(self, bhash: str, number: int) -> _Block:
        b = self._blocks.get(bhash)
        if b is None:
            b = self._blocks[bhash] = _Block(number)
            if number > self.head:
                self.head = number
                self.prune(number - self.reorg_depth)
        return b

    def _created(self, e, address: str, number: int, bhash: str, key, t_origin: int) -> dict | None:
        if self.factories and address not in self.factories:
            self.counts["created_unwatched_factory"] += 1
            return None
        self._block(bhash, number).seen.add(key)
        self.counts["created"] += 1
        v2 = isinstance(e, ev.PairCreated)
        return {"type": "created", "chain": self.chain, "block": number, "block_hash": bhash,
                "tx": key[0], "log_index": key[1], "factory": address,
                "pool": e.pair if v2 else e.pool, "kind": "v2" if v2 else "v3",
                "token0": e.token0, "token1": e.token1, "fee": None if v2 else e.fee,
                "tick_spacing": None if v2 else e.tick_spacing, "t_origin": t_origin}

    def _change(self, block: _Block, e, pool: Pool, address: str, number: int, bhash: str,
                key, t_origin: int) -> dict | None:
        prev_gross: dict[int, int | None] = {}
        delta = ticks = None
        if isinstance(e, ev.V2Sync):
            new, event = pool.with_reserves(e.reserve0, e.reserve1), "sync"
        elif isinstance(e, ev.V3Swap):
            new, event = pool.with_state(e.sqrt_price_x96, e.liquidity, e.tick), "swap"
        elif isinstance(e, ev.V3Initialize):
            new, event = pool.with_state(e.sqrt_price_x96, pool.liquidity, e.tick), "initialize"
        else:
            minted = isinstance(e, ev.V3Mint)
            change = e.amount if minted else -e.amount
            if change == 0:                          # a burn of 0 only pokes fees
                self.counts["burn_poke"] += 1
                return None
            got = self._modify(pool, address, e.tick_lower, e.tick_upper, change, prev_gross)
            if got is None:
                return None
            new, ticks = got
            event = "mint" if minted else "burn"
            delta = {"tick_lower": e.tick_lower, "tick_upper": e.tick_upper, "liquidity": str(change)}
        impact = 0 if delta else _impact(pool, new)
        rec = self._record(number, bhash, key[0], key[1], new, event, impact, t_origin)
        if delta:
            rec["delta"], rec["ticks"] = delta, ticks_field(ticks)
        block.changes.append(_Change(key, (number, key[1]), address, pool,
                                     self._pos.get(address, (-1, -1)), prev_gross, rec))
        self._pos[address] = (number, key[1])
        self.graph.update(new)
        return rec

    def _modify(self, pool: V3Pool, address: str, lower: int, upper: int, change: int,
                prev_gross: dict) -> tuple[V3Pool, dict] | None:
        """UniswapV3Pool._modifyPosition's effect on the tick table and active liquidity."""
        sp = pool.tick_spacing
        if not lower < upper or lower % sp or upper % sp:
            self.counts["bad_data"] += 1
            return None
        gross = self.gross.setdefault(address, {})
        if change < 0 and (gross.get(lower, 0) < -change or gross.get(upper, 0) < -change):
            self.counts["inconsistent"] += 1          # burns more than the book holds: drift
            return None
        nets: dict[int, int | None] = {}
        for t, d_net in ((lower, change), (upper, -change)):
            prev_gross[t] = gross.get(t)
            g = gross.get(t, 0) + change
            if g == 0:
                gross.pop(t, None)
                nets[t] = None                        # flipped off: tick cleared
            else:
                gross[t] = g
                nets[t] = pool.ticks.get(t, 0) + d_net
        liquidity = pool.liquidity + (change if lower <= pool.tick < upper else 0)
        new = with_ticks(pool, nets).with_state(pool.sqrt_price_x96, liquidity, pool.tick)
        return new, nets

    def _record(self, number: int, bhash: str, tx: str, log_index: int, pool: Pool, event: str,
                impact: int, t_origin: int, reverted: bool = False) -> dict:
        return {"type": "pool", "chain": self.chain, "block": number, "block_hash": bhash,
                "tx": tx, "log_index": log_index, "pool": pool.address, "kind": pool.kind.value,
                "event": event, "state": state_of(pool), "impact_bps": impact,
                "interrupt": impact >= self.threshold_bps, "reverted": reverted,
                "t_origin": t_origin}

    # ---- undo
    def _undo(self, c: _Change, t_origin: int) -> dict:
        """Undo one change (it must be the newest of its pool); its reverted record."""
        now = self.graph.pools[c.pool]
        restored = c.prev
        if c.prev_gross:
            gross = self.gross.setdefault(c.pool, {})
            for t, g in c.prev_gross.items():
                if g is None:
                    gross.pop(t, None)
                else:
                    gross[t] = g
        self.graph.update(restored)
        self._pos[c.pool] = c.prev_pos
        o = c.record
        rec = self._record(o["block"], o["block_hash"], o["tx"], o["log_index"], restored,
                           o["event"], _impact(now, restored), t_origin, reverted=True)
        if "delta" in o:
            d = o["delta"]
            rec["delta"] = {**d, "liquidity": str(-int(d["liquidity"]))}
            rec["ticks"] = ticks_field({t: restored.ticks.get(t) for t in c.prev_gross})
        self.counts["reverted"] += 1
        return rec

    def revert_blocks(self, block_hashes: Iterable[str] | None = None,
                      from_block: int | None = None) -> list[dict]:
        """Undo the blocks named (or every block >= from_block) and all blocks held above them;
        their reverted records, newest change first.  Unknown hashes are ignored."""
        hashes = {h.lower() for h in block_hashes or ()}
        lows = [b.number for h, b in self._blocks.items() if h in hashes]
        if from_block is not None:
            lows.append(from_block)
        if not lows:
            return []
        low = min(lows)
        drop = sorted(((b.number, h) for h, b in self._blocks.items() if b.number > low or
                       h in hashes or (from_block is not None and b.number >= from_block)),
                      reverse=True)
        t = time.monotonic_ns()
        out = []
        for _, h in drop:
            b = self._blocks.pop(h)
            for c in reversed(b.changes):
                out.append(self._undo(c, t))
            for address, created in reversed(b.created):
                out.append(self._uncreate(address, created, t))
        self.counts["blocks_reverted"] += len(drop)
        self.head = min(self.head, low - 1)
        return out

    def _uncreate(self, address: str, created: dict, t_origin: int) -> dict:
        """A pool whose creation block is gone: out of the book; its reverted "created" record
        (a replica drops the pool on it)."""
        pool = self.graph.remove(address)
        self.gross.pop(address, None)
        self._pos.pop(address, None)
        self.counts["created_reverted"] += 1
        return {**created, "state": state_of(pool) if pool is not None else created["state"],
                "reverted": True, "interrupt": False, "impact_bps": 0, "t_origin": t_origin}

    def _removed(self, bhash: str, key: tuple[str, int], t_origin: int) -> dict | None:
        block = self._blocks.get(bhash)
        if block is None or key not in block.seen:
            self.counts["removed_unknown"] += 1
            return None
        block.seen.discard(key)
        mine = next((c for c in block.changes if c.key == key), None)
        if mine is None:                              # a V2 Swap or a creation: no state of its own
            self.counts["removed"] += 1
            return None
        # undo the pool's changes from this one on, newest first
        later = sorted(((c.pos, h, c) for h, b in self._blocks.items() for c in b.changes
                        if c.pool == mine.pool and c.pos >= mine.pos), key=lambda x: x[0], reverse=True)
        ticks: dict[int, int | None] = {}
        rec = None
        for _, h, c in later:
            self._blocks[h].changes.remove(c)
            self._blocks[h].seen.discard(c.key)
            rec = self._undo(c, t_origin)
            ticks.update({t: self.graph.pools[c.pool].ticks.get(t) for t in c.prev_gross})
        if len(later) > 1 and ticks:
            rec["ticks"] = ticks_field(ticks)
            rec.pop("delta", None)      # several changes undone at once: only the tables say it
        self.counts["removed"] += 1
        return rec

    def prune(self, finalised_block: int) -> None:
        """Forget undo and dedup memory of blocks at or below `finalised_block`; logs of those
        blocks are dropped as stale from now on."""
        if finalised_block <= self.pruned_through:
            return
        self.pruned_through = finalised_block
        for h in [h for h, b in self._blocks.items() if b.number <= finalised_block]:
            del self._blocks[h]

    def hashes_at(self, number: int) -> list[str]:
        """The hashes of the blocks at height `number` the undo log holds (more than one only
        while a fork's block, e.g. one a webhook brought, waits to be found orphaned)."""
        return [h for h, b in self._blocks.items() if b.number == number]

    def block_hashes(self) -> dict[int, list[str]]:
        """Block number -> hashes the undo log holds (what a reorg check compares against)."""
        out: dict[int, list[str]] = {}
        for h, b in self._blocks.items():
            out.setdefault(b.number, []).append(h)
        return out

    def statistics(self) -> dict:
        return {"pools": len(self.graph), "head": self.head, "pruned_through": self.pruned_through,
                "blocks_held": len(self._blocks), **self.counts}
