"""A real day of a real Uniswap V3 pool through the PoolBook: Polygon USDC.e/WETH 0.05 %
(0x45dda9…0608), 2023-11-25, every Swap, Mint, Burn and Collect log (../shared/data/chain,
demeter-fetch's raw export; see its SOURCES.md).  No node needed: the logs are the input.

What it checks, exactly, on real data: a Swap log replaces the state; between two swaps that end
in the same tick (the second crossed no tick: a swap moves the price one way only), the
liquidity the second swap reports equals the book's after the Mint/Burn logs in between, i.e.
the book adds a position's liquidity exactly when tick_lower <= tick < tick_upper, as the pool.
The export has no block hashes: each block's hash is made from its number (stated, not real).
The day starts mid-history, so the positions minted before it are unknown to the book: every
tick the day touches is granted a large liquidityGross, so a burn of an older position passes
the book's consistency check (its liquidityNet is still followed exactly from there).
"""
from __future__ import annotations

import ast
import csv

from engine.arb.v3 import V3Pool
from engine.chain.poolbook import PoolBook

POOL = "0x45dda9cb7c25131df268515131f647d726f50608"
FILE = f"chain/demeter-fetch_samples/polygon-{POOL}-2023-11-25.raw.csv"


def real_logs(shared_data) -> list[dict]:
    with open(shared_data / FILE, newline="") as f:
        return [{"address": POOL, "topics": ast.literal_eval(row["pool_topics"]),
                 "data": row["pool_data"], "blockNumber": int(row["block_number"]),
                 "blockHash": "0x" + format(int(row["block_number"]), "064x"),
                 "transactionHash": row["transaction_hash"], "logIndex": int(row["pool_log_index"])}
                for row in csv.DictReader(f)]


def test_a_real_day_of_swaps_mints_and_burns(shared_data):
    logs = real_logs(shared_data)
    assert len(logs) == 3485
    book = PoolBook("polygon", threshold_bps=50, reorg_depth=100)
    book.graph.add(V3Pool(POOL, "0x" + "01" * 20, "0x" + "02" * 20, 500, 10, 1 << 96, 0, 0, {}))
    book.gross[POOL] = {int(t, 16) - (1 << 256) if int(t, 16) >> 255 else int(t, 16): 1 << 127
                        for log in logs if len(log["topics"]) == 4 for t in log["topics"][2:]}
    checked = in_range = interrupts = 0
    last_swap_tick = None
    since_swap: list[dict] = []
    for log in logs:
        before = book.graph.pools[POOL]
        rec = book.apply(log, 0)
        if rec is None:
            continue
        interrupts += rec["interrupt"]
        if rec["event"] == "swap":
            if last_swap_tick is not None and since_swap and rec["state"]["tick"] == last_swap_tick:
                assert int(rec["state"]["liquidity"]) == before.liquidity, (rec, since_swap)
                checked += 1
                in_range += any(r["delta"]["tick_lower"] <= last_swap_tick < r["delta"]["tick_upper"]
                                for r in since_swap)
            last_swap_tick, since_swap = rec["state"]["tick"], []
        else:
            since_swap.append(rec)
    c = book.counts
    # 141 Burns, of which the zero-amount pokes (fees only) change nothing; 139 Collects: unknown
    assert (c["swap"], c["mint"], c["burn"] + c["burn_poke"], c["unknown_topic"]) == (3098, 107, 141, 139)
    assert c["burn_poke"] > 0 and c["burn"] > 0
    assert checked >= 20 and in_range >= 5, (checked, in_range)
    print(f"real day: {checked} same-tick swap pairs around mints/burns checked, {in_range} in range, "
          f"{interrupts} interrupts")
    assert 0 < interrupts < c["swap"] // 10          # a calm day: few 0.5 % moves on a deep pool
    # the same day again: every log a duplicate or older than the undo log
    n = c["duplicate"] + c["stale"] + c["unknown_topic"]
    assert all(book.apply(log, 0) is None for log in logs)
    assert c["duplicate"] + c["stale"] + c["unknown_topic"] - n == len(logs)
    assert c["duplicate"] > 0
