"""Research tasks that read one chain's node over HTTP JSON-RPC (roles/research/__init__.py says
which role runs which, and what each discovery feeds).

    gas-trend     eth_feeHistory over the last `blocks` blocks: the next base fee, its slope and
                  volatility, the 10/50/90th percentile priority fees; the bid it recommends
    block-times   the last `blocks` headers: block interval (mean, p50, p95, jitter), gas used
                  per block, and the chain's own timing fields where the node has them (Arbitrum
                  `l1BlockNumber`, OP-stack's L1 fee oracle); the state age it recommends
                  refusing Actions beyond
    mev-watch     eth_getLogs of the watched pools over the last `blocks` blocks, analysed by
                  engine/arb/competition.py: who back-runs big swaps, and how contested each
                  pool is (a route through a contested pool is scored down)

Every call goes through roles/tasks.py's non-blocking `_rpc` (the task yields while the socket
is not ready), one call per step, so no step holds the role longer than one JSON parse of a
small answer.  A node that is down or answers garbage fails the run (`Failed`: counted, logged
rate-limited, retried at the next interval); the role never stops for it.  Where the node does
not have a field (anvil has no Arbitrum or OP-stack internals), the discovery says so rather
than invent a figure.
"""
from __future__ import annotations

import statistics
import time

from engine.arb import events as ev
from engine.arb.competition import Analysis
from engine.core.tasks import Failed, Priority, Task, TaskContext

from ..tasks import RpcError, _rpc

GAS_ORACLE = "0x420000000000000000000000000000000000000F"   # OP-stack GasPriceOracle predeploy
SEL_L1_BASE_FEE = "0x519b4bd3"                                # l1BaseFee()


class ChainTask(Task):
    """A task about one chain: `chain` and its HTTP endpoint (`rpc`) are given by the role."""

    priority = Priority.MEDIUM
    OPTIONS = {"rpc": (str, None, "the http:// JSON-RPC endpoint (the role sets it)"),
               "timeout": (float, 5.0, "seconds one call may take")}

    def __init__(self, chain: str, **kw):
        self.chain = chain
        super().__init__(**kw)

    def call(self, method: str, params: list):
        url = self.options.get("rpc")
        if not url:
            self.state["last_error"] = f"{self.chain}: no rpc endpoint configured"
            raise Failed(self.state["last_error"])
        try:
            return (yield from _rpc(url, method, params, float(self.options["timeout"])))
        except (OSError, RpcError, ValueError) as e:
            self.state["errors"] = self.state.get("errors", 0) + 1
            self.state["last_error"] = f"{url}: {method}: {e}"[:300]
            raise Failed(self.state["last_error"]) from e


def _q(x) -> int:
    if isinstance(x, str) and x.startswith("0x"):
        return int(x, 16)
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    raise Failed(f"not a quantity: {x!r:.60}")


def _slope_pct(values: list[int]) -> float:
    """Least-squares slope of `values` per step, as % of their mean (0 when flat or short)."""
    n = len(values)
    if n < 2 or not any(values):
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    num = sum((i - mx) * (v - my) for i, v in enumerate(values))
    den = sum((i - mx) ** 2 for i in range(n))
    return round(num / den / my * 100, 4) if my else 0.0


class GasTrend(ChainTask):
    name = "gas-trend"
    interval = 60.0
    OPTIONS = {**ChainTask.OPTIONS,
               "blocks": (int, 20, "blocks of fee history per run"),
               "headroom_blocks": (int, 2, "blocks of a rising base fee the bid covers")}

    def initial_state(self):
        return {"runs": 0, "errors": 0, "last_error": "", "at_block": None,
                "next_base_fee_wei": None, "priority_wei": None, "slope_pct_per_block": None}

    def run(self, ctx: TaskContext):
        n = int(self.options["blocks"])
        h = yield from self.call("eth_feeHistory", [hex(n), "latest", [10, 50, 90]])
        if not isinstance(h, dict) or not isinstance(h.get("baseFeePerGas"), list):
            raise Failed(f"{self.chain}: eth_feeHistory answered {h!r:.80}")
        base = [_q(b) for b in h["baseFeePerGas"]]
        rewards = [[_q(r) for r in row] for row in (h.get("reward") or []) if len(row) == 3]
        oldest = _q(h.get("oldestBlock", "0x0"))
        nxt = base[-1]                       # the base fee of the next block
        slope = _slope_pct(base)
        pct = {p: (int(statistics.median(r[i] for r in rewards)) if rewards else 0)
               for i, p in enumerate((10, 50, 90))}
        vol = round(statistics.pstdev(base) / statistics.mean(base) * 100, 4) if any(base) else 0.0
        rise = max(0.0, slope) / 100 * int(self.options["headroom_blocks"])
        st = self.state
        st.update(runs=st["runs"] + 1, at_block=oldest + len(base) - 2, next_base_fee_wei=nxt,
                  priority_wei={f"p{p}": v for p, v in pct.items()},   # JSON: string keys
                  slope_pct_per_block=slope, volatility_pct=vol,
                  bid_max_fee_wei=int(nxt * (1 + rise)) * 2 + pct[50],
                  bid_priority_wei=pct[50], sampled_at=time.time())
        ctx.discover(self.name, {"kind": "gas-trend", "chain": self.chain,
                                 "block": st["at_block"], "next_base_fee_wei": str(nxt),
                                 "slope_pct_per_block": slope, "volatility_pct": vol,
                                 "priority_p10_p50_p90_wei": [str(pct[p]) for p in (10, 50, 90)],
                                 "bid_priority_wei": str(pct[50])})


class BlockTiming(ChainTask):
    name = "block-times"
    interval = 300.0
    OPTIONS = {**ChainTask.OPTIONS,
               "blocks": (int, 32, "headers read per run"),
               "age_factor": (float, 3.0, "recommended max state age = this × the p95 interval")}

    def initial_state(self):
        return {"runs": 0, "errors": 0, "last_error": "", "head": None, "interval_s": None,
                "max_state_age_s": None}

    def run(self, ctx: TaskContext):
        head = _q((yield from self.call("eth_blockNumber", [])))
        n = max(2, int(self.options["blocks"]))
        headers = []
        extra = None
        for b in range(max(0, head - n + 1), head + 1):
            hd = yield from self.call("eth_getBlockByNumber", [hex(b), False])
            if not isinstance(hd, dict):
                raise Failed(f"{self.chain}: block {b}: the node answered {hd!r:.60}")
            headers.append((_q(hd["timestamp"]), _q(hd.get("gasUsed", "0x0")),
                            _q(hd.get("gasLimit", "0x1")) or 1))
            if b == head:
                extra = hd
        if len(headers) < 2:
            raise Failed(f"{self.chain}: fewer than two blocks to time")
        gaps = [b[0] - a[0] for a, b in zip(headers, headers[1:])]
        span = headers[-1][0] - headers[0][0]
        mean = span / len(gaps)
        p95 = sorted(gaps)[min(len(gaps) - 1, int(len(gaps) * 0.95))]
        jitter = round(statistics.pstdev(gaps), 4)
        use = round(statistics.mean(g / lim for _, g, lim in headers) * 100, 3)
        age = round(max(mean, p95, 1.0) * float(self.options["age_factor"]), 3)
        chain_fields = self._chain_fields(extra)
        if self.chain == "base":
            try:
                fee = yield from self.call("eth_call", [{"to": GAS_ORACLE, "data": SEL_L1_BASE_FEE},
                                                        "latest"])
                chain_fields["l1_base_fee_wei"] = (str(int(fee, 16)) if isinstance(fee, str)
                                                   and len(fee) > 2 else
                                                   "not available on this node (no GasPriceOracle)")
            except Failed:
                chain_fields["l1_base_fee_wei"] = "not available on this node (no GasPriceOracle)"
        st = self.state
        st.update(runs=st["runs"] + 1, head=head, interval_s=round(mean, 4), p95_interval_s=p95,
                  jitter_s=jitter, gas_use_pct=use, max_state_age_s=age, **chain_fields)
        ctx.discover(self.name, {"kind": "block-times", "chain": self.chain, "head": head,
                                 "blocks": len(headers), "interval_s": round(mean, 4),
                                 "p95_interval_s": p95, "jitter_s": jitter, "gas_use_pct": use,
                                 "max_state_age_s": age, **chain_fields})

    def _chain_fields(self, hd: dict | None) -> dict:
        """What the chain's own header says about its sequencing, where the node has it."""
        hd = hd or {}
        if self.chain == "arbitrum":
            l1 = hd.get("l1BlockNumber")
            return {"l1_block_number": _q(l1) if l1 is not None else
                    "not available on this node (no Nitro header fields)"}
        if self.chain == "polygon":
            return {"miner": hd.get("miner")}
        return {}


class MevWatch(ChainTask):
    name = "mev-watch"
    interval = 120.0
    OPTIONS = {**ChainTask.OPTIONS,
               "blocks": (int, 300, "blocks of swap logs analysed per run"),
               "chunk_blocks": (int, 25, "blocks per eth_getLogs call (keeps each answer small)"),
               "threshold_bps": (int, 50, "a swap moving its pool this much is a trigger"),
               "window_blocks": (int, 1, "a reversal this many blocks later is a back-run"),
               "min_backruns": (int, 2, "back-runs that make an address a bot")}

    def __init__(self, chain: str, pools=(), exclude=(), **kw):
        self.pools, self.exclude = sorted({p.lower() for p in pools}), list(exclude)
        super().__init__(chain, **kw)

    def initial_state(self):
        return {"runs": 0, "errors": 0, "last_error": "", "blocks": None, "contested": {},
                "bots": []}

    def run(self, ctx: TaskContext):
        if not self.pools:
            raise Failed(f"{self.chain}: no watched pools to analyse")
        head = _q((yield from self.call("eth_blockNumber", [])))
        lo = max(0, head - int(self.options["blocks"]) + 1)
        step = max(1, int(self.options["chunk_blocks"]))
        an = Analysis(int(self.options["threshold_bps"]), int(self.options["window_blocks"]),
                      self.exclude)
        # small answers and a few logs per step: an interrupt waits for the task's next yield
        for a in range(lo, head + 1, step):
            part = yield from self.call("eth_getLogs", [{
                "fromBlock": hex(a), "toBlock": hex(min(head, a + step - 1)), "address": self.pools,
                "topics": [[ev.SYNC_TOPIC, ev.V2_SWAP_TOPIC, ev.V3_SWAP_TOPIC]]}])
            if not isinstance(part, list):
                raise Failed(f"{self.chain}: eth_getLogs answered {part!r:.60}")
            for i, log in enumerate(part):     # the node answers in block and log order
                an.add(log)
                if i % 16 == 15:
                    yield None
            yield None
        comp = an.result()
        bots = comp.bots(int(self.options["min_backruns"]))
        contested = {p: s for p, s in comp.contested().items() if s > 0}
        st = self.state
        new_bots = {b["address"] for b in bots} - {b["address"] for b in st["bots"]}
        st.update(runs=st["runs"] + 1, blocks=[lo, head], contested=contested, bots=bots,
                  swaps=comp.swaps, big_swaps=sum(comp.big.values()), bad_logs=comp.bad)
        if bots or new_bots:
            ctx.discover(self.name, {"kind": "mev-bots", "chain": self.chain, "blocks": [lo, head],
                                     "swaps": comp.swaps, "big_swaps": sum(comp.big.values()),
                                     "bots": bots[:10], "new": sorted(new_bots),
                                     "contested": dict(sorted(contested.items(),
                                                              key=lambda kv: -kv[1])[:20])})

    def score(self, pool: str) -> float:
        """How contested `pool` is (0: nobody back-runs it; 1: every big swap was taken)."""
        return float(self.state["contested"].get(pool.lower(), 0.0))
