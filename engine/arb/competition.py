"""Who competes for which pools: back-runners found in a window of swap logs (pure).

    analyse(logs, threshold_bps=50, window_blocks=1, exclude=()) ──► Competition
    Analysis(...).add(log) … .result()    the same, a log at a time (a task yields between)
        big swap:  a swap that moves its pool's price by >= threshold_bps (the trigger an
                   arbitrageur waits for), by actor A at (block b, log index i)
        back-run:  the first later swap on the same pool, in the other direction, by an actor
                   B != A, in block b after i or within `window_blocks` blocks after b: B took
                   the gap (a searcher's bot, or our own executor unless excluded)
    Competition.contested()  pool -> share of its big swaps that were back-run (0..1)
    Competition.bots(n)      the actors with at least n back-runs, most first, with their pools

The actor of a swap is its recipient (`to` of a V2 Swap, `recipient` of a V3 Swap): an
arbitrage contract swaps to itself, while the router or periphery a trader goes through is the
`sender` of every user's swap alike.  Prices come from the logs themselves (V2: the Sync before
the Swap, and the reserves before it from the Swap's amounts; V3: the Swap's sqrtPriceX96, so a
V3 pool's first swap in the window only sets its price).
Logs are eth_getLogs-shaped dicts; malformed ones are counted in `bad` and skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from . import events as ev
from .impact import move_bps


@dataclass
class Competition:
    first_block: int = -1
    last_block: int = -1
    swaps: int = 0
    bad: int = 0
    big: dict[str, int] = field(default_factory=dict)                 # pool -> big swaps
    backruns: dict[tuple[str, str], int] = field(default_factory=dict)  # (actor, pool) -> count

    def contested(self) -> dict[str, float]:
        """pool -> back-runs / big swaps (pools with a big swap only)."""
        per_pool: dict[str, int] = {}
        for (_, pool), n in self.backruns.items():
            per_pool[pool] = per_pool.get(pool, 0) + n
        return {p: round(min(1.0, per_pool.get(p, 0) / n), 4) for p, n in self.big.items()}

    def bots(self, min_backruns: int = 2) -> list[dict]:
        by_actor: dict[str, dict[str, int]] = {}
        for (actor, pool), n in self.backruns.items():
            by_actor.setdefault(actor, {})[pool] = n
        out = [{"address": a, "backruns": sum(p.values()), "pools": dict(sorted(p.items()))}
               for a, p in by_actor.items() if sum(p.values()) >= min_backruns]
        return sorted(out, key=lambda b: (-b["backruns"], b["address"]))


class Analysis:
    """The incremental form of `analyse`: `add` logs in chain order (block, log index), a few
    at a time between a background task's yields; `result` is the Competition so far."""

    def __init__(self, threshold_bps: int = 50, window_blocks: int = 1, exclude: Iterable[str] = ()):
        self.threshold, self.window = threshold_bps, window_blocks
        self.skip = {a.lower() for a in exclude}
        self.out = Competition()
        self.price: dict[str, tuple[int, int]] = {}     # pool -> (num, den): token0 in token1
        self.synced: dict[str, tuple[int, int]] = {}    # V2: the Sync just applied (for its Swap)
        self.pending: dict[str, tuple[int, int, str, bool]] = {}  # pool -> (block, index, actor, rose)

    def add(self, log: dict) -> None:
        out = self.out
        try:
            block, index = _int(log["blockNumber"]), _int(log["logIndex"])
            e = ev.decode(log["topics"], log.get("data", "0x"))
            pool = log["address"].lower()
        except (KeyError, TypeError, ValueError, AttributeError):
            out.bad += 1
            return
        if out.first_block < 0:
            out.first_block = block
        out.last_block = max(out.last_block, block)
        price, synced, pending = self.price, self.synced, self.pending
        if isinstance(e, ev.V2Sync):
            synced[pool] = (e.reserve1, e.reserve0)
            return
        if isinstance(e, ev.V2Swap):
            actor, after = e.to.lower(), synced.pop(pool, None)
            if after is not None and pool not in price:   # the reserves before it, exactly
                r1, r0 = after
                b0, b1 = r0 - e.amount0_in + e.amount0_out, r1 - e.amount1_in + e.amount1_out
                if b0 > 0 and b1 >= 0:
                    price[pool] = (b1, b0)
        elif isinstance(e, ev.V3Swap):
            actor, after = e.recipient.lower(), (e.sqrt_price_x96 ** 2, 1)
        else:
            return
        out.swaps += 1
        before = price.get(pool)
        if after is None or after[1] == 0:
            return
        price[pool] = after
        if before is None or before[0] == 0:
            return
        bps, rose = move_bps(before[0], before[1], after[0], after[1])
        big = pending.get(pool)
        if big is not None and block > big[0] + self.window:
            pending.pop(pool)
            big = None
        if big is not None and actor != big[2] and rose != big[3] and actor not in self.skip:
            out.backruns[(actor, pool)] = out.backruns.get((actor, pool), 0) + 1
            pending.pop(pool)
            return
        if bps >= self.threshold:
            out.big[pool] = out.big.get(pool, 0) + 1
            pending[pool] = (block, index, actor, rose)

    def result(self) -> Competition:
        return self.out


def analyse(logs: Iterable[dict], threshold_bps: int = 50, window_blocks: int = 1,
            exclude: Iterable[str] = ()) -> Competition:
    """Every log at once, in any order (sorted here by block and log index)."""
    a = Analysis(threshold_bps, window_blocks, exclude)
    keyed, bad = [], []
    for log in logs:
        try:
            keyed.append(((_int(log["blockNumber"]), _int(log["logIndex"])), log))
        except (KeyError, TypeError, ValueError, AttributeError):
            bad.append(log)
    for _, log in sorted(keyed, key=lambda k: k[0]):
        a.add(log)
    a.out.bad += len(bad)
    return a.result()


def _int(x) -> int:
    if isinstance(x, bool):
        raise ValueError("a boolean is not a number")
    return x if isinstance(x, int) else int(x, 16)
