"""What an agent does with an interrupting pool record: price the opportunities it opened.

    pool record (applied to the replica) ──► stale?  (block behind the newest seen > max lag:
        │                                             refused before any search)
        ▼
    OpportunitySearch.on_event([pool])   the cycles through the moved pool on the replica graph,
        │                                screened in floats, the best few sized exactly (their
        │                                index built between switches: the `search-index` task)
        │  loan fee: the chain's lenders (the devnet manifest's Balancer Vault, fee 0, and Aave
        │            pool, 5 bps; a V2 flash swap on the route's first pair)
        │  gas:      the gas-sampler's live figure (the larger of its EWMA and last sample),
        │            `gas_gwei` until the first sample, priced as the chain charges (GasModel)
        ▼
    Decider.decide   fresh, above the minimum, simulated by the exact re-quote on this replica
        │            (engine/arb/validate.requote; the chain's eth_call is the executor's),
        │            confidence >= 0.95
        ▼
    one compact record for the outbox (≤ a ring slot: the Action only when approved) and one
    full record for the `opportunities` database (LMDB, written between switches by the
    `record-opportunities` task), counted by reason for `status`, one log line each (rate-limited)

Refusal codes (the `code` field; `reason` says the figures): no-replica, unknown-pool, stale,
no-cycle, no-profitable-route, below-minimum, simulation-failed, low-confidence, contested,
fork-test, learned, cannot-build, not-a-pool-record, below-threshold.

Research feeds it (roles/research): the gas-trend task's next base fee and median priority fee
are the gas price when it has run (else the gas-sampler's, else `gas_gwei`); the mev-watch
task's share of a pool's big swaps that were back-run scores down every route through it
(confidence × (1 − contest_weight · share); below the 0.95 filter it is refused, "contested").

Learning (roles/learning.py): every priced decision keeps its `features` (engine/arb/learn.py
decision_features) in its LMDB record; once the coordinator has published a model that beat the
fixed rule on held-back outcomes, an approved decision the model expects to fail is refused
("learned": its probability below the model's threshold).  No usable model: the fixed rule alone.
A route whose newest fork test (the executor's fork-testing) reverted, not for gas, is refused
for `fork_hold_s` ("fork-test"): alone on a fork at its block it failed, so the agent's model
of it is wrong, whatever the competition.
"""
from __future__ import annotations

import time
from dataclasses import replace

from engine.arb.decision import Decider, DecisionConfig, Simulation, StateInfo
from engine.arb.learn import decision_features
from engine.arb.profit import GWEI, GasModel, _depth
from engine.arb.search import OpportunitySearch, SearchConfig
from engine.arb.validate import requote
from engine.arb.wire import action_record
from engine.chain.venue import CHAIN_GAS, gas_model, loan_book  # noqa: F401 (loan_book: also ours)
from engine.core.tasks import NotReady, Priority, Task

# preferred profit tokens, best first (the graph starts each cycle at the first it holds)
BASE_SYMBOLS = ("WETH", "WMATIC", "USDC", "USDC.e", "USDbC", "USDT", "DAI", "WBTC")
FLUSH_CHUNK = 4          # decision records per LMDB transaction between two yields
QUEUE_AFTER = 10         # background runs finding the writer lock busy before the writer thread
NO_SEARCH = -10**40      # the search keeps every sized cycle: the Decider says why one is too small

OPTIONS = {
    "min_profit": (int, 1, "net profit after gas an action must keep, in the profit token's "
                           "smallest unit"),
    "gas_gwei": (float, 0.1, "gas price until the gas-sampler has a sample (gwei)"),
    "priority_gwei": (float, 0.0, "priority fee bid on EIP-1559 chains (gwei; Polygon: at "
                                  "least its 30 gwei floor)"),
    "max_block_lag": (int, 2, "a record this many blocks behind the newest seen is stale"),
    "max_age_s": (float, 2.0, "a record older than this (from its t_origin) is stale"),
    "max_hops": (int, 3, "longest cycle searched"),
    "max_exact": (int, 4, "cycles sized on exact math per event"),
    "deadline_s": (int, 30, "an action's deadline: seconds after the decision"),
    "log_per_s": (int, 20, "decision log lines per second at most (the rest are counted)"),
    "explore": (float, 0.05, "share of the routes the learned model refuses that are sent "
                             "anyway, so later versions are judged on them too"),
    "fork_hold_s": (float, 3600.0, "a route whose fork test reverted is refused this long "
                                   "(unless a later test of it lands)"),
    "contest_weight": (float, 1.0, "a route through a pool back-run with share s of its big "
                                   "swaps (mev-watch) keeps confidence × (1 − weight·s)"),
}


def _reason_code(reason: str) -> str:
    if "< min_profit" in reason:      # the contract's own check would revert it
        return "below-minimum"
    for prefix, code in (("stale", "stale"), ("contested", "contested"), ("learned", "learned"),
                         ("fork-test", "fork-test"), ("predicted net profit", "below-minimum"),
                         ("simulation loses", "below-minimum"),
                         ("simulation failed", "simulation-failed"),
                         ("confidence", "low-confidence"), ("cannot build", "cannot-build"),
                         ("unsimulatable", "simulation-failed")):
        if reason.startswith(prefix):
            return code
    return "refused"


class ChainPricer:
    """One chain's search, gas and decision over the role's replica of that chain."""

    def __init__(self, chain: str, options: dict, chain_manifest: dict | None, gas_state=None,
                 clock=time.time, contested=None, model=None):
        self.chain, self.o = chain, options
        m = chain_manifest or {}
        tokens = m.get("tokens") or {}
        self.style, native_sym = CHAIN_GAS.get(chain, ("ethereum", "WETH"))
        self.native = ((tokens.get(native_sym) or {}).get("address") or native_sym).lower()
        self.base_tokens = tuple(tokens[s]["address"].lower() for s in BASE_SYMBOLS
                                 if s in tokens and tokens[s].get("address"))
        self.loans = loan_book(m)
        self.gas_state = gas_state or (lambda: None)
        self.contested = contested or (lambda pool: 0.0)   # pool -> share back-run (mev-watch)
        self.model = model          # roles/learning.ModelGate: the learned half of the filter
        self.clock = clock
        self.head = 0                 # newest block seen on this chain
        self.graph = None
        self.search: OpportunitySearch | None = None
        self.decider = Decider(self.gas_model(), DecisionConfig(
            min_profit=int(options["min_profit"]), max_block_lag=int(options["max_block_lag"]),
            max_age_s=float(options["max_age_s"]), deadline_s=int(options["deadline_s"])),
            self._simulate, clock=clock)

    # ---------------------------------------------------------------------------- gas
    def gas_gwei(self) -> tuple[float, str]:
        st = self.gas_state() or {}
        trend = st.get("next_base_fee_wei")
        if isinstance(trend, int) and not isinstance(trend, bool):
            return trend / GWEI, "trend"        # the gas-trend task: next block's base fee
        live = [g for g in (st.get("ewma_gwei"), st.get("last_gwei")) if isinstance(g, (int, float))]
        if live:
            return max(live), "sampled"
        return float(self.o["gas_gwei"]), "fallback"

    def gas_model(self) -> GasModel:
        gwei, _ = self.gas_gwei()
        base = max(0, int(gwei * GWEI))
        prio = max(0, int(float(self.o["priority_gwei"]) * GWEI))
        bid = (self.gas_state() or {}).get("bid_priority_wei")
        if isinstance(bid, int) and not isinstance(bid, bool):
            prio = max(prio, bid)               # what the recent blocks' median paid
        return gas_model(self.style, self.chain, self.native, base, prio)

    # ---------------------------------------------------------------------------- pricing
    def _bind(self, graph) -> None:
        if graph is not self.graph:   # a new replica (snapshot reloaded): new cycle caches
            self.graph = graph
            if self.base_tokens and not graph.base_tokens:
                graph.base_tokens = self.base_tokens    # before its first cycles are built
            self.search = OpportunitySearch(graph, self.decider.gas, self.loans, SearchConfig(
                max_hops=min(int(self.o["max_hops"]), graph.max_hops),
                max_exact=int(self.o["max_exact"]), min_net_profit=NO_SEARCH), chain=self.chain)

    def _simulate(self, action) -> Simulation:
        """The agent's simulator: the exact re-quote on its own replica (the executor's
        eth_call is the chain's word)."""
        r = requote(self.graph, action, loans=self.loans, min_confidence=0.0)
        # the shape's gas as measured on the chain (the executor's contract-optimisation), when
        # there is a figure: the Decider then prices gas and sets the limit from it
        units = self.model.gas_for(action) if self.model is not None else None
        return Simulation(r.ok, r.profit, units, "" if r.ok else r.reason)

    def price(self, graph, ev: dict, ident: str) -> tuple[dict, dict]:
        """(outbox fields, LMDB detail) for one interrupting pool record on `graph`."""
        block = int(ev.get("block") or 0)
        lag = self.head - block
        if lag > int(self.o["max_block_lag"]):
            return refusal("stale", f"stale: record at block {block}, newest seen {self.head} "
                                     f"(max lag {self.o['max_block_lag']})"), {}
        pool = ev.get("pool")
        if pool not in graph:
            return refusal("unknown-pool", f"unknown pool: {pool} is not in the replica"), {}
        gas = self.gas_model()
        self.decider.gas = gas
        self._bind(graph)
        self.search.gas = gas
        t0 = time.perf_counter()
        opps = self.search.on_event([pool])
        t1 = time.perf_counter()
        detail = {"search_us": round((t1 - t0) * 1e6, 1), "gas_gwei": gas.base_fee_wei / GWEI,
                  "gas_source": self.gas_gwei()[1]}
        if not opps:
            cycles = [c for c in graph.cycles_through(pool) if len(c) <= self.search.config.max_hops]
            if not cycles:
                return refusal("no-cycle", f"no route: no cycle of at most "
                                            f"{self.search.config.max_hops} pools through {pool}"), detail
            return refusal("no-profitable-route", f"no route: none of the {len(cycles)} cycles "
                                                   "through the pool pays its fees"), detail
        opp = opps[0]
        now = self.clock()
        t_origin = ev.get("t_origin")
        observed = now - max(0.0, (time.monotonic_ns() - t_origin) / 1e9) \
            if isinstance(t_origin, int) and t_origin > 0 else now
        d = self.decider.decide(opp, graph, StateInfo(block, max(self.head, block), observed),
                                event_id=ident)
        detail.update(d.record())
        score, where = max(((self.contested(h.pool), h.pool) for h in opp.route.hops),
                           default=(0.0, ""))
        detail["contested"] = score
        if d.approved and score > 0:            # scored down: a rival takes these first
            conf = round(d.confidence * max(0.0, 1 - float(self.o["contest_weight"]) * score), 6)
            if conf < self.decider.config.min_confidence:
                d = replace(d, approved=False, confidence=conf, action=None,
                            reason=f"contested: {where} had {score:.0%} of its big swaps back-run "
                                   f"(mev-watch); confidence {conf} < "
                                   f"{self.decider.config.min_confidence}")
            else:
                d = replace(d, confidence=conf)
        hop0 = opp.route.hops[0]
        p0 = graph.pools.get(hop0.pool)
        feats = decision_features(
            chain=self.chain, amount_in=opp.profit.amount_in, net=opp.net,
            gross=opp.profit.gross, gas_token=opp.profit.gas_cost_token,
            depth=_depth(p0, hop0.token_in) if p0 is not None else 0, hops=len(opp.route.hops),
            contested=score, age_s=float(d.checks.get("age_s") or 0.0),
            trigger_contested=self.contested(pool))
        detail["features"] = feats
        if d.approved and self.model is not None and (why := self.model.fork_refusal(d.action)):
            d = replace(d, approved=False, action=None, reason=why)
        if d.approved and self.model is not None:
            pools = [h.pool for h in opp.route.hops]
            why, p, version, weight = self.model.judge(feats, pools, ident)
            if p is not None:
                detail["model"] = {"version": version, "p": round(p, 4),
                                   "route_failed": round(self.model.history.failed(pools), 4)}
                if weight != 1.0:        # refused by the model, sent to explore
                    detail["model"]["explore_weight"] = weight
            if why:
                d = replace(d, approved=False, action=None, reason=why)
        detail["decide_us"] = round((time.perf_counter() - t1) * 1e6, 1)
        out = {"approved": d.approved, "code": "ok" if d.approved else _reason_code(d.reason),
               "reason": d.reason, "confidence": d.confidence, "net": str(opp.net),
               "token": opp.route.token, "hops": len(opp.route.hops), "contested": score}
        if d.approved:
            # the notes (repay, method, trigger) stay in LMDB: the slot is 1 KiB
            out["action"] = action_record(replace(d.action, notes={}))
        return out, detail


def refusal(code: str, reason: str) -> dict:
    return {"approved": False, "code": code, "reason": reason, "confidence": 0.0, "net": None}


class DecisionBook:
    """Counts, log lines and the LMDB buffer of one role's decisions.  The switch only counts
    and buffers (`add`); the log lines, the status file and the LMDB commit come from the
    `record-opportunities` task between switches (`background`): each cost the switch
    hundreds of µs (a DECIDE p50 of 1.7 ms in `bench switch` when done inline)."""

    def __init__(self, log, log_per_s: int, clock=time.monotonic):
        self.log, self.log_per_s, self.clock = log, max(1, log_per_s), clock
        self.total = self.approved = 0
        self.by_code: dict[str, int] = {}
        self.pending: list[dict] = []       # full records for LMDB
        self.lines: list[dict] = []         # decisions to log (the rate limit already applied)
        self.written = self.write_errors = 0
        self.busy_runs = 0                  # background runs in a row that found the lock busy
        self.dirty = False                  # the status info changed since it was written
        self.last_background = clock()
        self._window, self._in_window, self.unlogged = 0.0, 0, 0

    def add(self, rec: dict, detail: dict, *, log: bool) -> None:
        self.total += 1
        self.dirty = True
        if rec["approved"]:
            self.approved += 1
        else:
            self.by_code[rec["code"]] = self.by_code.get(rec["code"], 0) + 1
        self.pending.append({**{k: v for k, v in rec.items() if k != "action"}, **detail,
                             **({"action": rec["action"]} if "action" in rec else {})})
        if len(self.pending) > 10_000:       # the store is gone: keep memory bounded
            del self.pending[:1000]
            self.write_errors += 1000
        if log:
            now = self.clock()
            if now - self._window >= 1.0:
                if self.unlogged:
                    self.lines.append({"unlogged": self.unlogged})
                self._window, self._in_window, self.unlogged = now, 0, 0
            if self._in_window >= self.log_per_s:
                self.unlogged += 1
            else:
                self._in_window += 1
                self.lines.append(rec)

    def background(self, store, prefix: str, set_info=None) -> None:
        """What the switch left, all at once (at stop, or when the task has not run)."""
        for _ in self.background_steps(store, prefix, set_info):
            pass

    def background_steps(self, store, prefix: str, set_info=None):
        """What the switch left: log lines, the LMDB batch, the status info — in steps of a few
        lines or `FLUSH_CHUNK` records, so an interrupt waits at most one small step (a whole
        0.2 s batch in one step, encoded, checked for secrets and committed, took 1-2 ms: agent
        switch p99 1.4-1.7 ms in `bench switch` against 0.46-0.48 ms without it)."""
        self.last_background = self.clock()
        lines, self.lines = self.lines, []
        for i, rec in enumerate(lines):
            if self.log is None:
                break
            if "unlogged" in rec:
                self.log.info("decisions not logged (rate limit)", count=rec["unlogged"])
            else:
                self.log.info("opportunity approved" if rec["approved"] else "opportunity refused",
                              chain=rec.get("chain"), event=rec.get("event"), code=rec["code"],
                              reason=rec["reason"][:160], net=rec.get("net"), token=rec.get("token"))
            if i % 4 == 3:
                yield None
        while store is not None and self.pending:
            batch = self.pending[:FLUSH_CHUNK]
            # Inline or not now: queued, the writer thread (nice 10, like the role) held the
            # GIL mid-job while the boosted main thread waited for it.  Queued all the same
            # once the lock has been busy for QUEUE_AFTER runs (the store must not fall behind).
            if not flush(store, prefix, batch, self, queue=self.busy_runs >= QUEUE_AFTER):
                self.busy_runs += 1
                break
            self.busy_runs = 0
            del self.pending[:len(batch)]
            yield None
        if set_info is not None and self.dirty:
            self.dirty = False
            set_info()
        yield None

    def info(self) -> dict:
        refused = self.total - self.approved
        text = (f"opportunities {self.total}: {self.approved} approved, {refused} refused"
                + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(self.by_code.items())) + ")"
                   if self.by_code else ""))
        return {"text": text, "opportunities": self.total, "approved": self.approved,
                "refused": refused, "refused_by_reason": dict(self.by_code),
                "recorded": self.written, "record_errors": self.write_errors}


class RecordOpportunities(Task):
    """Between switches: the role's decisions to the `opportunities` database, their log lines
    and its status info (on the switch path each held up the next interrupt: DEVELOPING.md)."""
    name = "record-opportunities"
    priority = Priority.HIGH
    interval = 0.2
    OPTIONS = {}

    def __init__(self, book: DecisionBook | None = None, store=None, prefix: str = "",
                 set_info=None, **kw):
        super().__init__(**kw)
        self.book, self.store, self.prefix, self.set_info = book, store, prefix, set_info

    def initial_state(self):
        return {"written": 0}

    def run(self, ctx):
        if self.book is not None:
            for step in self.book.background_steps(self.store, self.prefix, self.set_info):
                self.state["written"] = self.book.written
                yield step
        yield None


class SearchIndex(Task):
    """Between switches: the cycles through every pool of the role's replicas and the search's
    screen entries for them (OpportunitySearch.prepare), so an interrupt finds them built.
    Cold, one pool of a 1 000-pool graph costs 200-600 µs; in the switch, on a pool's first
    event, that was the two-pool search's p99 (`bench decide`).  A run after the first only
    checks (a dict lookup a pool) unless the topology changed (a pool added or removed) or a
    replica was reloaded.  Steps of at most ~STEP_S, then a safe point for the switch."""
    name = "search-index"
    priority = Priority.LOW
    interval = 5.0
    OPTIONS = {}
    STEP_S = 0.0002

    def __init__(self, pricers: dict | None = None, graphs=None, **kw):
        super().__init__(**kw)
        self.pricers = pricers or {}
        self.graphs = graphs or (lambda: {})

    def initial_state(self):
        return {"runs": 0, "pools": {}, "cycles": {}}

    def run(self, ctx):
        graphs = {c: g for c, g in (self.graphs() or {}).items()
                  if c in self.pricers and g is not None and len(g)}
        if not graphs:
            raise NotReady("no replica loaded yet (waiting for the monitors' snapshots)")
        st = self.state
        for chain, g in graphs.items():
            pricer = self.pricers[chain]
            pricer._bind(g)
            search = pricer.search
            cycles = 0
            t = time.perf_counter()
            for addr in list(g.pools):
                cycles += search.prepare(addr)
                if time.perf_counter() - t > self.STEP_S:
                    yield None
                    t = time.perf_counter()
            st["pools"][chain], st["cycles"][chain] = len(g), cycles
        st["runs"] += 1
        yield None


def flush(store, prefix: str, batch: list, book: DecisionBook, wait: float | None = None,
          queue: bool = True) -> bool:
    """Write `batch`; False only when queue=False and the writer lock was busy (nothing
    written, nothing counted: the caller keeps the records).  A failure counts them lost."""
    try:
        job = store.append_many("opportunities", prefix, batch, queue=queue)
        if job is None:
            return False
        if wait is not None:
            job.wait(wait)
        book.written += len(batch)
    except Exception as e:   # a full or closed store must not stop the role
        book.write_errors += len(batch)
        if book.log is not None:
            book.log.warning("cannot record decisions", error=str(e)[:200], count=len(batch))
    return True
