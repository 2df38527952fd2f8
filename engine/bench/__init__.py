"""Benchmarks: `syndicate bench NAME [--json] [...]`.

Each benchmark is a module here with `main(argv) -> int`.  A benchmark always measures its
baseline in the same run and prints it beside the result with the ratio (see engine/bench/report.py),
because figures from another run or another machine are not comparable on a noisy 2-core box.
"""
from __future__ import annotations

import importlib
import sys

BENCHES = {
    "ring": "shared-memory ring vs multiprocessing.Queue and faster-fifo",
    "switch": "atomic switch latency with every role busy vs a Queue round trip",
    "store": "checkpoint latency in LMDB vs sqlite WAL and fsync'd JSON",
    "decide": "event -> action latency of the arbitrage search; replay of real days",
    "webhook": "Moralis receiver deliveries/s and latency, durable inbox vs none",
    "detect": "swap log bytes on the socket -> pool record in the ring vs web3.py, on the devnet",
    "e2e": "swap -> log -> agent -> executor -> receipt on the devnet, live, vs a web3.py loop",
    "all": "the guide's performance table: every figure beside its tiers and its baseline",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: syndicate bench NAME [--json] [options]\n")
        for name, text in BENCHES.items():
            print(f"  {name:<8} {text}")
        return 0 if argv else 2
    name = argv[0]
    if name not in BENCHES:
        print(f"syndicate bench: unknown benchmark {name!r} (one of: {', '.join(BENCHES)})",
              file=sys.stderr)
        return 2
    return int(importlib.import_module(f"engine.bench.{name}").main(argv[1:]) or 0)
