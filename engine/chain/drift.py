"""The drift check: re-read a sample of a book's pools from the chain and name every difference.

The book's state is exact by construction (every log applied as the contract applies it), so
any pool reported here is a bug or a missed log: `status` shows the count, and it should be 0.
The pools are read at the book's head block (the last block whose logs it applied), so a chain
that has moved on meanwhile is no false alarm; call it between blocks, not halfway through one.

A node may answer a read at its newest block from state that the next block is still writing:
anvil 1.7.1 did, 6 times in 13 735 reads of slot0() at the head while it mined a swap every
0.3 s (a later read of the same block gave another answer).  So a difference found at block B
is only a suspicion until it is read again once the node has a block after B, when B's state is
history and can no longer change: `capture` keeps what the book said at B, `compare` judges the
second read against it (roles/monitor.py does both).
"""
from __future__ import annotations

import random
from typing import Iterable

from engine.arb.v2 import V2Pool
from engine.chain.pools import Loaded, load_pools
from engine.chain.poolbook import PoolBook
from engine.chain.rpc import RpcClient


def capture(book: PoolBook, addresses: Iterable[str]) -> tuple[dict, dict]:
    """The book's pools (immutable objects) and a copy of their gross tables, as of now."""
    pools = {a: book.graph.pools[a] for a in addresses if a in book.graph.pools}
    return pools, {a: dict(book.gross.get(a, {})) for a in pools}


def compare(pools: dict, gross: dict, chain: Loaded, addresses: Iterable[str]) -> dict[str, str]:
    """address -> what differs between the book's `pools`/`gross` and `chain` (read at one
    block), for `addresses`."""
    at = chain.block
    drift = {a: "not in the book" for a in addresses if a not in pools}
    drift.update({a: f"could not re-read: {why}" for a, why in chain.errors.items()})
    for a, onchain in chain.pools.items():
        mine = pools.get(a)
        if mine is None:
            continue
        diffs = []
        if isinstance(mine, V2Pool):
            fields = ("reserve0", "reserve1")
        else:
            fields = ("sqrt_price_x96", "liquidity", "tick")
            if dict(mine.ticks) != dict(onchain.ticks):
                ks = set(mine.ticks) ^ set(onchain.ticks) | {
                    t for t in mine.ticks if onchain.ticks.get(t) != mine.ticks[t]}
                diffs.append(f"liquidityNet differs at ticks {sorted(ks)[:8]}")
            if gross.get(a, {}) != chain.gross.get(a, {}):
                diffs.append("liquidityGross differs")
        for f in fields:
            if getattr(mine, f) != getattr(onchain, f):
                diffs.append(f"{f} book {getattr(mine, f)} chain {getattr(onchain, f)}")
        if diffs:
            drift[a] = f"at block {at}: " + "; ".join(diffs)
    return drift


def sample_of(book: PoolBook, sample: int | Iterable[str] | None = None,
              rng: random.Random | None = None) -> list[str]:
    """The addresses a check reads: all (None), that many at random (an int), or those named."""
    addresses = list(book.graph.pools)
    if isinstance(sample, int):
        return (rng or random).sample(addresses, min(sample, len(addresses)))
    if sample is not None:
        return [a.lower() for a in sample]
    return addresses


def check_drift(book: PoolBook, rpc: RpcClient, sample: int | Iterable[str] | None = None,
                block: int | None = None, rng: random.Random | None = None) -> dict[str, str]:
    """address -> what differs, for the pools sampled (None: all; an int: that many at random;
    else those addresses) whose state on chain differs from the book's.  One read: on a chain
    still mining at `block`, a difference is a suspicion (see the module text)."""
    addresses = sample_of(book, sample, rng)
    at = book.head if block is None else block
    pools, gross = capture(book, addresses)
    return compare(pools, gross, load_pools(rpc, book.specs(addresses), at), addresses)
