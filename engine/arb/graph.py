"""One chain's pool graph: tokens are nodes, pools are edges, and the cycles through each pool.

    pools      address -> V2Pool | V3Pool     (state; replaced whole on every Sync/Swap)
    by_token   token -> addresses             (topology; changes only when a pool is added)
    cycles     address -> [Cycle, ...]        (every simple cycle of 2..max_hops pools through
                                               that pool, both directions; built on first use and
                                               dropped when the topology changes)

A `Cycle` is a tuple of legs `(pool_address, token_in)`.  Its first leg sells the cycle's profit
token: a base token (WETH, a stable, the native wrapper...) when the cycle has one, so profits
come out in something with a price.  State updates (`update`) never touch the cycle cache: an
event costs one dict store, and the search looks the cycles up.
"""
from __future__ import annotations

from typing import Iterable, Union

from engine.arb.types import Hop, Route
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool

Pool = Union[V2Pool, V3Pool]
CHANGE_LOG = 8192
Leg = tuple[str, str]          # (pool address, token sold into it)
Cycle = tuple[Leg, ...]


class PoolGraph:
    def __init__(self, pools: Iterable[Pool] = (), max_hops: int = 3,
                 base_tokens: Iterable[str] = ()) -> None:
        if max_hops < 2:
            raise ValueError(f"max_hops must be >= 2 (got {max_hops})")
        self.max_hops = max_hops
        self.base_tokens = tuple(base_tokens)  # earlier = preferred profit token
        self.pools: dict[str, Pool] = {}
        self.by_token: dict[str, set[str]] = {}
        self._cycles: dict[str, tuple[Cycle, ...]] = {}
        # every state change, in order (the newest CHANGE_LOG at most): caches of derived
        # figures (the search's float legs, profit.convert's rates) catch up from it
        self.changes: list[str] = []
        self.changes_base = 0    # the version of changes[0]
        self.rates: dict = {}   # profit.convert's mid-price cache (see _cached_rate)
        self.topology = 0       # bumped when a pool is added or removed (caches of routes)
        for p in pools:
            self.add(p)

    def __len__(self) -> int:
        return len(self.pools)

    def __contains__(self, address: str) -> bool:
        return address in self.pools

    def __getitem__(self, address: str) -> Pool:
        return self.pools[address]

    @property
    def version(self) -> int:
        """How many state changes the graph has seen."""
        return self.changes_base + len(self.changes)

    def changed_since(self, version: int) -> list[str] | None:
        """The pools changed after `version` (repeats possible), or None if the log no longer
        reaches back that far (then everything must be taken as changed)."""
        if version < self.changes_base:
            return None
        return self.changes[version - self.changes_base:]

    def _changed(self, address: str) -> None:
        self.changes.append(address)
        if len(self.changes) > CHANGE_LOG:
            drop = len(self.changes) // 2
            del self.changes[:drop]
            self.changes_base += drop

    def add(self, pool: Pool) -> None:
        """A new pool (or a new state of a known one)."""
        known = pool.address in self.pools
        self.pools[pool.address] = pool
        self._changed(pool.address)
        if not known:
            for t in pool.tokens:
                self.by_token.setdefault(t, set()).add(pool.address)
            self._cycles.clear()
            self.topology += 1

    def update(self, pool: Pool) -> Pool | None:
        """Replace a known pool's state; returns the previous state (None if it was unknown)."""
        prev = self.pools.get(pool.address)
        if prev is None:
            self.add(pool)
        else:
            self.pools[pool.address] = pool
            self._changed(pool.address)
        return prev

    def remove(self, address: str) -> Pool | None:
        """Forget a pool (its creation was undone by a reorg); returns its last state."""
        pool = self.pools.pop(address, None)
        if pool is not None:
            for t in pool.tokens:
                held = self.by_token.get(t)
                if held is not None:
                    held.discard(address)
                    if not held:
                        del self.by_token[t]
            self._cycles.clear()
            self.topology += 1
        return pool

    def pools_between(self, a: str, b: str) -> list[str]:
        return sorted(self.by_token.get(a, set()) & self.by_token.get(b, set()))

    def cycles_through(self, address: str) -> tuple[Cycle, ...]:
        c = self._cycles.get(address)
        if c is None:
            c = self._cycles[address] = self._find_cycles(address)
        return c

    def _find_cycles(self, address: str) -> tuple[Cycle, ...]:
        pool = self.pools[address]
        found: set[Cycle] = set()
        for start in pool.tokens:
            end = pool.other(start)
            # legs after the first: a simple path from `end` back to `start`
            stack: list[tuple[str, tuple[Leg, ...], frozenset[str], frozenset[str]]] = [
                (end, ((address, start),), frozenset((address,)), frozenset((start, end)))]
            while stack:
                token, legs, used_pools, used_tokens = stack.pop()
                if len(legs) >= self.max_hops:
                    continue
                here = self.by_token.get(token, set())
                if len(legs) == self.max_hops - 1:
                    # the last leg must close the cycle: only pools of (token, start) qualify,
                    # which keeps hub tokens (300 pools on WETH) from making this quadratic
                    here = here & self.by_token.get(start, set())
                for nxt_addr in here:
                    if nxt_addr in used_pools:
                        continue
                    nxt = self.pools[nxt_addr].other(token)
                    leg = (nxt_addr, token)
                    if nxt == start:
                        found.add(self._rotate(legs + (leg,)))
                    elif nxt not in used_tokens:
                        stack.append((nxt, legs + (leg,), used_pools | {nxt_addr},
                                      used_tokens | {nxt}))
        return tuple(sorted(found, key=lambda c: (len(c), c)))

    def _rotate(self, legs: tuple[Leg, ...]) -> Cycle:
        """Start the cycle at its most preferred base token (else keep the event pool first)."""
        for base in self.base_tokens:
            for i, (_, token_in) in enumerate(legs):
                if token_in == base:
                    return legs[i:] + legs[:i]
        return legs

    def hop(self, addr: str, token_in: str) -> Hop:
        p = self.pools[addr]
        return Hop(pool=addr, kind=p.kind, token_in=token_in, token_out=p.other(token_in),
                   fee=p.fee, dex=p.dex)

    def route(self, cycle: Cycle) -> Route:
        return Route(tuple(self.hop(addr, token_in) for addr, token_in in cycle))

    def statistics(self) -> dict:
        return {"pools": len(self.pools), "tokens": len(self.by_token),
                "cached_cycle_sets": len(self._cycles), "max_hops": self.max_hops}
