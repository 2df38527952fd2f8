"""The drift check: re-read a sample of a book's pools from the chain and name every difference.

The book's state is exact by construction (every log applied as the contract applies it), so
any pool reported here is a bug or a missed log: `status` shows the count, and it should be 0.
The pools are read at the book's head block (the last block whose logs it applied), so a chain
that has moved on meanwhile is no false alarm; call it between blocks, not halfway through one.
"""
from __future__ import annotations

import random
from typing import Iterable

from engine.arb.v2 import V2Pool
from engine.chain.pools import load_pools
from engine.chain.poolbook import PoolBook
from engine.chain.rpc import RpcClient


def check_drift(book: PoolBook, rpc: RpcClient, sample: int | Iterable[str] | None = None,
                block: int | None = None, rng: random.Random | None = None) -> dict[str, str]:
    """address -> what differs, for the pools sampled (None: all; an int: that many at random;
    else those addresses) whose state on chain differs from the book's."""
    addresses = list(book.graph.pools)
    if isinstance(sample, int):
        addresses = (rng or random).sample(addresses, min(sample, len(addresses)))
    elif sample is not None:
        addresses = [a.lower() for a in sample]
    at = book.head if block is None else block
    chain = load_pools(rpc, book.specs(addresses), at)
    drift = {a: "not in the book" for a in addresses if a not in book.graph.pools}
    drift.update({a: f"could not re-read: {why}" for a, why in chain.errors.items()})
    for a, onchain in chain.pools.items():
        mine = book.graph.pools[a]
        diffs = []
        if isinstance(mine, V2Pool):
            fields = ("reserve0", "reserve1")
        else:
            fields = ("sqrt_price_x96", "liquidity", "tick")
            if dict(mine.ticks) != dict(onchain.ticks):
                ks = set(mine.ticks) ^ set(onchain.ticks) | {
                    t for t in mine.ticks if onchain.ticks.get(t) != mine.ticks[t]}
                diffs.append(f"liquidityNet differs at ticks {sorted(ks)[:8]}")
            if book.gross.get(a, {}) != chain.gross.get(a, {}):
                diffs.append("liquidityGross differs")
        for f in fields:
            if getattr(mine, f) != getattr(onchain, f):
                diffs.append(f"{f} book {getattr(mine, f)} chain {getattr(onchain, f)}")
        if diffs:
            drift[a] = f"at block {at}: " + "; ".join(diffs)
    return drift
