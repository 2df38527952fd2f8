"""Research tasks on pool graphs: the role's own replicas, or the monitors' snapshots.

    path-discovery   every cycle through every pool of the role's replicas, a few pools per step
                     (engine/arb/graph.py caches them, so the search on an interrupt finds them
                     built instead of building them in the switch); new cycles since the last
                     run are the discovery
    liquidity-map    per token pair: its pools and their depth in the pair's first token, the
                     deepest pairs first (what a monitor should watch, what a route can carry)
    bridge-gaps      the same token's price in a stable on each chain, from the three monitors'
                     graph snapshots (run_dir/graph.<chain>.snap): the gaps in bps, reported,
                     never traded (a bridge takes minutes; the gap is information)

`graphs` is a callable returning {chain: PoolGraph or None} (None: that replica is not loaded
yet); a run over no graph fails (`Failed`) and is retried at the next interval.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import orjson

from engine.arb.graph import PoolGraph
from engine.arb.profit import _depth, convert   # _depth: the search's own measure of a pool
from engine.core.tasks import NotReady, Priority, Task, TaskContext

PER_STEP = 4         # pools whose cycles one step builds (a 300-pool hub: ~100 µs each)


def _graphs(graphs: Callable[[], dict]) -> dict[str, PoolGraph]:
    ready = {c: g for c, g in (graphs() or {}).items() if g is not None and len(g)}
    if not ready:
        raise NotReady("no pool graph loaded yet (waiting for the monitors' snapshots)")
    return ready


class PathDiscovery(Task):
    name = "path-discovery"
    priority = Priority.LOW
    interval = 3600.0

    def __init__(self, graphs: Callable[[], dict], **kw):
        self.graphs = graphs
        super().__init__(**kw)

    def initial_state(self):
        return {"runs": 0, "cycles": {}, "by_length": {}}

    def run(self, ctx: TaskContext):
        st = self.state
        for chain, g in _graphs(self.graphs).items():
            seen: set = set()
            for i, address in enumerate(list(g.pools)):
                if address in g.pools:
                    seen.update(g.cycles_through(address))
                if i % PER_STEP == PER_STEP - 1:
                    yield None
            by_len: dict[str, int] = {}
            for c in seen:
                by_len[str(len(c))] = by_len.get(str(len(c)), 0) + 1
            before = st["cycles"].get(chain, 0)
            st["cycles"][chain] = len(seen)
            st["by_length"][chain] = by_len
            if len(seen) != before:
                ctx.discover(self.name, {"kind": "paths", "chain": chain, "cycles": len(seen),
                                         "by_length": by_len, "new": len(seen) - before,
                                         "pools": len(g)})
        st["runs"] += 1


class LiquidityMap(Task):
    name = "liquidity-map"
    priority = Priority.LOW
    interval = 900.0
    OPTIONS = {"top": (int, 20, "pairs kept in the map")}

    def __init__(self, graphs: Callable[[], dict], **kw):
        self.graphs = graphs
        super().__init__(**kw)

    def initial_state(self):
        return {"runs": 0, "pairs": {}}

    def run(self, ctx: TaskContext):
        top = int(self.options["top"])
        for chain, g in _graphs(self.graphs).items():
            pairs: dict[tuple[str, str], list] = {}
            for i, p in enumerate(list(g.pools.values())):
                pairs.setdefault(tuple(sorted(p.tokens)), []).append(p)
                if i % 32 == 31:
                    yield None
            rows = []
            for (a, b), pools in pairs.items():
                depth = sum(_depth(p, a) for p in pools)
                rows.append({"pair": [a, b], "pools": sorted(p.address for p in pools),
                             "dexes": sorted({p.dex for p in pools if p.dex}),
                             "depth_token0": str(depth), "_d": depth})
            rows.sort(key=lambda r: -r["_d"])
            for r in rows:
                del r["_d"]
            self.state["pairs"][chain] = rows[:top]
            ctx.discover(self.name, {"kind": "liquidity-map", "chain": chain, "pairs": len(rows),
                                     "multi_pool_pairs": sum(1 for r in rows if len(r["pools"]) > 1),
                                     "top": rows[:5]})
        self.state["runs"] += 1


class BridgeGaps(Task):
    name = "bridge-gaps"
    priority = Priority.LOW
    interval = 600.0
    OPTIONS = {"min_gap_bps": (int, 30, "gaps at least this wide are discoveries")}

    def __init__(self, run_dir: Path, tokens: dict, stable: str = "USDC", **kw):
        """tokens: chain -> {symbol: {"address", "decimals"}} (the manifest's)."""
        self.run_dir, self.tokens, self.stable = Path(run_dir), tokens, stable
        super().__init__(**kw)

    def initial_state(self):
        return {"runs": 0, "prices": {}, "gaps": {}}

    def run(self, ctx: TaskContext):
        from engine.chain.replica import load_graph
        prices: dict[str, dict[str, float]] = {}
        for chain, toks in self.tokens.items():
            path = self.run_dir / f"graph.{chain}.snap"
            try:
                _, _, body = path.read_bytes().partition(b"\n")
                g = load_graph(body)
            except (OSError, ValueError, orjson.JSONDecodeError):
                continue            # that chain's monitor has not written one (yet)
            yield None
            stable = toks.get(self.stable)
            if stable is None:
                continue
            for sym, t in toks.items():
                if sym == self.stable:
                    continue
                one = 10 ** int(t["decimals"])
                got = convert(g, one, t["address"].lower(), stable["address"].lower())
                if got:
                    prices.setdefault(sym, {})[chain] = got / 10 ** int(stable["decimals"])
        if not prices:
            raise NotReady("no chain's graph snapshot could be read")
        gaps = {}
        for sym, per in prices.items():
            if len(per) >= 2:
                lo, hi = min(per.values()), max(per.values())
                gaps[sym] = int((hi - lo) / lo * 10_000) if lo > 0 else 0
        st = self.state
        st.update(runs=st["runs"] + 1, prices=prices, gaps=gaps)
        wide = {s: g for s, g in gaps.items() if g >= int(self.options["min_gap_bps"])}
        if wide:
            ctx.discover(self.name, {"kind": "bridge-gaps", "gaps_bps": wide,
                                     "prices": {s: prices[s] for s in wide},
                                     "note": "reported, not traded"})
