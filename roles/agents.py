"""The guide's agent roles: spotters, analysts and the coordinator (the executor, which
validates and sends, is roles/executor.py; `roles.agents:Executor` still names it).

The agents calculate: on each interrupting pool record an agent searches the cycles through the
moved pool on its replica, prices them net of the loan fee and of gas, decides (the exact
re-quote on its replica is its simulator; confidence >= 0.95) and publishes one `opportunity`
record to its outbox (`out.<role>`): the Action (engine/arb/wire.action_record) when approved,
else the refusal with its code and reason (roles/pricing.py).  The executor validates: it
re-quotes each approved Action on its own replica (engine/arb/validate.requote) before the
chain's eth_call (DEVELOPING.md, "Who calculates, who validates").

Each agent keeps a replica of its chains' pool graphs (engine/chain/replica.py): at start it
loads the chain monitor's snapshot (run_dir/graph.<chain>.snap, see roles/monitor.py), then
applies every pool record it reads from `events.<chain>`.  A snapshot that does not reach the
ring position the role starts reading at would leave a gap, so the replica is not used until a
snapshot that covers it is there (the monitor rewrites it within a second of any change); the
same after the role fell a lap behind.  Records are whole states, so the overlap between a
snapshot and the ring is harmless.

Background tasks (roles/tasks.py): `checksum` (CPU-bound, verifiable) where engine.toml asks
(`[tasks] checksum`, or the role's own table); `gas-sampler`
(I/O) when the role has an RPC endpoint: `options.rpc = "http://…"`, or its first chain's
`rpc_url` in the devnet manifest named by `[chains] manifest`.  The guide's roles are the
kinds `Spotter`, `Analyst` and `Specialist`: an Agent that also runs its research plan
(roles/research: PLAN) on its first chain.  What the research finds feeds the decisions: the
gas-trend figures are the gas price (roles/pricing.py), mev-watch's contested pools score
routes down, and block timing is shared with the executor through the outbox (a `research`
record: its staleness limit follows the measured block interval).
"""
from __future__ import annotations

import time

import orjson

from engine.chain import records
from engine.core.role import RoleKind
from engine.core.tasks import Priority, Task

from . import learning, metrics, pricing, research
from .research.chain import BlockTiming, GasTrend, MevWatch
from .tasks import ChecksumTask, GasSampler


class Replicas:
    """The role's pool graph per chain, from the monitor's snapshot and the ring."""

    def __init__(self, rt, chains):
        self.rt, self.chains = rt, list(chains)
        self.graphs: dict = {c: None for c in self.chains}
        self.need: dict[str, int] = {}       # chain -> ring sequence the snapshot must reach
        self.applied = self.unknown = self.bad = 0

    def start(self) -> None:
        for ring_name, reader in getattr(self.rt, "readers", []):
            if ring_name.startswith("events."):
                self.need[ring_name[7:]] = reader.cursor
        for c in self.chains:
            self.load(c)

    def load(self, chain: str) -> bool:
        from engine.chain.replica import load_graph
        path = self.rt.cfg.run_dir / f"graph.{chain}.snap"
        try:
            raw = path.read_bytes()
            head, _, body = raw.partition(b"\n")
            meta = orjson.loads(head)
            if int(meta.get("published", -1)) < self.need.get(chain, 0):
                return False          # older than where this role reads the ring: a gap
            self.graphs[chain] = load_graph(body)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, orjson.JSONDecodeError) as e:
            self.bad += 1
            self.rt.log.warning("cannot load the pool graph snapshot", path=str(path), error=str(e))
            return False
        self.rt.log.info("pool graph loaded", chain=chain, pools=len(self.graphs[chain]),
                         covers=meta.get("published"))
        return True

    def apply(self, ev: dict):
        """Apply one pool record; the pool's new state, or None (replica not ready, unknown)."""
        from engine.chain.replica import apply_record
        chain = ev.get("chain")
        if chain not in self.graphs:
            return None
        if self.graphs[chain] is None and not self.load(chain):
            return None
        try:
            pool = apply_record(self.graphs[chain], ev)
        except ValueError as e:
            self.bad += 1
            self.rt.log.warning("malformed pool record", error=str(e)[:200])
            return None
        if pool is None:
            self.unknown += 1
        else:
            self.applied += 1
        return pool

    def info(self) -> dict:
        chains = {c: (len(g) if g is not None else None) for c, g in self.graphs.items()}
        text = ", ".join(f"{c} {n} pools" if n is not None else f"{c} waiting for a snapshot"
                         for c, n in chains.items())
        return {"summary": f"replicas: {text}; {self.applied} records applied"
                           + (f", {self.unknown} for unknown pools" if self.unknown else "")
                           + (f", {self.bad} bad" if self.bad else ""),
                "replicas": chains, "applied": self.applied, "unknown": self.unknown,
                "bad": self.bad}

    def ready(self) -> dict:
        """The graphs, loading any still missing from the monitors' snapshots first: a quiet
        chain interrupts nobody, so background work (research) cannot wait for a switch."""
        for c, g in self.graphs.items():
            if g is None:
                self.load(c)
        return self.graphs

    def lost(self, ring: str) -> None:
        chain = ring[7:] if ring.startswith("events.") else None
        if chain in self.graphs:      # records were skipped: only a newer snapshot is whole
            self.graphs[chain] = None
            reader = dict(getattr(self.rt, "readers", [])).get(ring)
            self.need[chain] = reader.cursor if reader is not None else 0


class Agent(RoleKind):
    """A spotter, analyst or chain specialist: watches its chains' event rings and prices the
    opportunities each interrupting pool record opens (roles/pricing.py)."""

    OPTIONS = {"rpc": (str, None, "JSON-RPC endpoint for the gas-sampler (default: the devnet "
                                  "manifest's rpc_url of the role's first chain it serves)"),
               "impact_threshold_bps": (float, 50.0, "a non-pool event moving a price this "
                                                     "much is logged as a candidate"),
               **pricing.OPTIONS}
    TASKS = {"checksum": ChecksumTask, "gas-sampler": GasSampler,
             "record-opportunities": pricing.RecordOpportunities,
             "load-model": learning.LoadModel, "search-index": pricing.SearchIndex}
    decoders = records.DECODERS   # pool updates in their binary layout, beside JSON events
    METRICS = metrics.AGENT       # what /metrics reads from info["opportunities"]

    def __init__(self, rt):
        super().__init__(rt)
        chains = list(getattr(self.config, "chains", ()))
        self.replicas = Replicas(rt, chains)
        self.gas_task: GasSampler | None = None
        self._gas_chain = self._first_served_chain()
        cfg = getattr(rt, "cfg", None)
        served = ((getattr(cfg, "manifest", None) or {}).get("chains") or {})
        self.research: dict = {}           # name -> research task (the kind's FAMILY plan)
        self._shared: dict[str, int] = {}  # research task -> runs already shared in the outbox
        self.model_news = 0                # model versions the coordinator's outbox announced
        self.model_gate = learning.ModelGate(       # the learned filter, the fork's refusals
            getattr(rt, "log", None), fork_hold_s=float(self.options["fork_hold_s"]),
            explore=float(self.options["explore"]))
        self.pricers = {c: pricing.ChainPricer(
            c, self.options, served.get(c),
            gas_state=self._gas_state if c == self._gas_chain else None,
            contested=self._contested if chains and c == chains[0] else None,
            model=self.model_gate) for c in chains}
        self.book = pricing.DecisionBook(getattr(rt, "log", None), int(self.options["log_per_s"]))

    def on_start(self) -> None:
        self.replicas.start()

    def on_stop(self) -> None:
        store = getattr(self.rt, "store", None)
        if self.book.pending and store is not None:
            batch, self.book.pending = self.book.pending, []
            pricing.flush(store, self.name, batch, self.book, wait=2.0)
        self.background()

    def on_lost(self, ring: str, n: int) -> None:
        super().on_lost(ring, n)
        self.replicas.lost(ring)

    def tasks(self):
        ts = [ChecksumTask(),
              pricing.RecordOpportunities(self.book, getattr(self.rt, "store", None), self.name,
                                          self._write_info),
              learning.LoadModel(self.model_gate, getattr(self.rt, "store", None),
                                 on_load=self._write_info)]
        if self.pricers:
            ts.append(pricing.SearchIndex(self.pricers, self.replicas.ready))
        rpc = self.options["rpc"] or self._manifest_rpc()
        if rpc:
            self.gas_task = GasSampler(options={"rpc": rpc})
            ts.append(self.gas_task)
        if self.FAMILY:
            ts += self._research_tasks()
        return ts

    # ---- research (roles/research): what it finds, the decisions use
    FAMILY: str | None = None     # the research plan this kind runs (research.PLAN)

    def _research_tasks(self) -> list:
        chains = list(getattr(self.config, "chains", ()))
        cfg = getattr(self.rt, "cfg", None)
        if not chains or cfg is None:
            return []
        chain = chains[0]
        net = (getattr(cfg, "networks", None) or {}).get(chain) or {}
        served = ((getattr(cfg, "manifest", None) or {}).get("chains") or {})
        m = served.get(chain) or {}
        rpc = self.options["rpc"] or (net.get("rpc") or [None])[0] or m.get("rpc_url")
        ours = [a for a in (net.get("executor"), (m.get("contracts") or {}).get("executor")) if a]
        tasks = research.build(self.FAMILY, chain=chain, rpc=rpc,
                               pools=net.get("pools") or [p["address"] for p in m.get("pools", [])],
                               exclude=ours, graphs=self.replicas.ready,
                               run_dir=cfg.run_dir,
                               tokens={c: x.get("tokens") or {} for c, x in served.items()})
        self.research = {t.name: t for t in tasks}
        return tasks + [_ShareResearch(self)] if tasks else tasks

    def _gas_state(self):
        """The gas-trend task's figures once it has run, else the gas-sampler's."""
        for t in self.research.values():
            if isinstance(t, GasTrend) and t.state.get("runs"):
                return t.state
        return self.gas_task.state if self.gas_task is not None else None

    def _contested(self, pool: str) -> float:
        return max((t.score(pool) for t in self.research.values() if isinstance(t, MevWatch)),
                   default=0.0)

    def share_research(self) -> list[dict]:
        """Research another role acts on, new since the last call: block timing (the executor's
        staleness limit) and the gas trend (its priority fee).  Published to the outbox with an interrupt (the executor reads its
        inbox on interrupts; this comes once per block-timing run)."""
        out = []
        for t in self.research.values():
            if isinstance(t, (BlockTiming, GasTrend)) and \
                    t.state.get("runs", 0) > self._shared.get(t.name, 0):
                self._shared[t.name] = t.state["runs"]
                st = t.state
                rec = {"kind": "research", "task": t.name, "role": self.name, "chain": t.chain}
                if isinstance(t, BlockTiming):
                    rec.update(interval_s=st.get("interval_s"),
                               p95_interval_s=st.get("p95_interval_s"),
                               max_state_age_s=st.get("max_state_age_s"))
                else:       # the executor prices its fees with it (strings: uint256 on the wire)
                    rec.update(bid_priority_wei=str(st.get("bid_priority_wei")),
                               next_base_fee_wei=str(st.get("next_base_fee_wei")))
                out.append(rec)
        if out and getattr(self.rt, "outbox", None) is not None:
            self.rt.outbox.publish_many(out)
        return out

    def _first_served_chain(self) -> str | None:
        """The chain the gas-sampler samples: the first of the role's chains (with `rpc` set, it
        is assumed to be that chain's node)."""
        chains = list(getattr(self.config, "chains", ()))
        if self.options.get("rpc"):
            return chains[0] if chains else None
        cfg = getattr(self.rt, "cfg", None)
        served = ((getattr(cfg, "manifest", None) or {}).get("chains") or {}) if cfg else {}
        return next((c for c in chains if c in served), None)

    def _manifest_rpc(self) -> str | None:
        """The first of the role's chains that the [chains] manifest serves."""
        cfg = getattr(self.rt, "cfg", None)
        chains = ((cfg.manifest or {}).get("chains") or {}) if cfg is not None else {}
        for c in self.config.chains:
            if c in chains:
                return chains[c].get("rpc_url")
        return None

    def _model_news(self, ev: dict) -> None:
        """The coordinator committed a model version: load-model runs at the next slice, not
        here (reading the record, with its pool history, is work for between switches)."""
        self.model_news += 1
        tm = getattr(self.rt, "tm", None)
        if tm is not None:
            tm.run_soon("load-model")

    def handle(self, events):
        threshold = float(self.options["impact_threshold_bps"])
        out = []
        seen = False
        for ev in events:        # the newest block of each chain first: staleness is relative
            if ev.get("type") == "pool" and ev.get("chain") in self.pricers:
                p = self.pricers[ev["chain"]]
                b = ev.get("block")
                if isinstance(b, int) and b > p.head:
                    p.head = b
        for ev in events:
            if not ev["ring"].startswith("events."):
                if ev.get("kind") == "model":    # the coordinator announced a new version
                    self._model_news(ev)
                continue
            seen = True
            if ev.get("type") == "pool":
                out += self._pool_event(ev)
                continue
            impact = float(ev.get("impact_bps") or 0)   # an event without pool state
            big = abs(impact) >= threshold
            rec = self._record(ev, ev.get("id"), pricing.refusal(
                "not-a-pool-record" if big else "below-threshold",
                "no pool state in the event: nothing to price" if big else
                f"impact {impact} bps below the threshold {threshold}"))
            self.book.add(rec, {}, log=big)
            out.append(rec)
        if seen:
            self.book.dirty = True
            # the background task writes logs, LMDB and the status file; a paused role's does
            # not run, so its switches do it, once a second (a busy role's runs between switches:
            # done here it held up the next interrupt by ~1 ms)
            tm = getattr(self.rt, "tm", None)
            if tm is not None and tm.paused and \
                    self.book.clock() - self.book.last_background > 1.0:
                self.background()
        return out

    def background(self) -> None:
        self.book.background(getattr(self.rt, "store", None), self.name, self._write_info)

    def _write_info(self) -> None:
        if hasattr(self.rt, "set_info"):
            self.rt.set_info(self.info())

    def info(self) -> dict:
        doc = self.replicas.info()
        ops = self.book.info()
        doc["summary"] += "; " + ops.pop("text")
        doc["opportunities"] = ops
        doc["gas"] = {c: {"gwei": p.gas_gwei()[0], "source": p.gas_gwei()[1]}
                      for c, p in self.pricers.items()}
        doc["model"] = {**self.model_gate.info(), "announced": self.model_news}
        if self.research:
            doc["research"] = {n: {k: t.state.get(k) for k in ("runs", "errors", "last_error")}
                               for n, t in self.research.items()}
        return doc

    def _record(self, ev: dict, ident, fields: dict) -> dict:
        return {"kind": "opportunity", "role": self.name, "event": ident,
                "chain": ev.get("chain"), "block": ev.get("block"), "pool": ev.get("pool"),
                "impact_bps": ev.get("impact_bps"), **fields,
                "t_event": ev.get("t_written"), "t_origin": ev.get("t_origin", ev.get("t_written")),
                "t_decided": time.monotonic_ns()}

    def _pool_event(self, ev: dict) -> list[dict]:
        """A chain monitor's record: the replica takes every one; each interrupting one is
        priced and gets one decision (an action or a refusal with its reason)."""
        self.replicas.apply(ev)
        if not ev.get("interrupt") or ev.get("reverted"):
            return []
        chain = ev.get("chain")
        ident = f"{chain}:{ev.get('block_hash')}:{ev.get('tx')}:{ev.get('log_index')}"
        graph = self.replicas.graphs.get(chain)
        pricer = self.pricers.get(chain)
        detail: dict = {}
        if graph is None or pricer is None:
            fields = pricing.refusal("no-replica", f"no replica of {chain} yet (waiting for the "
                                                    "monitor's graph snapshot)")
        else:
            try:
                fields, detail = pricer.price(graph, ev, ident)
            except Exception as e:   # a pricing bug must cost this event, never the role
                fields = pricing.refusal("error", f"pricing failed: {type(e).__name__}: {e}")
                self.log.error("pricing failed", event=ident, error=repr(e)[:300])
        rec = self._record(ev, ident, fields)
        self.book.add(rec, detail, log=True)
        return [rec]


class _ShareResearch(Task):
    """Every few seconds: hand research other roles act on to the outbox (Agent.share_research)."""
    name = "share-research"
    priority = Priority.MEDIUM
    interval = 5.0

    def __init__(self, kind: "Agent", **kw):
        super().__init__(**kw)
        self.kind = kind

    def initial_state(self):
        return {"shared": 0}

    def run(self, ctx):
        self.state["shared"] += len(self.kind.share_research())
        self.kind._write_info()       # status shows the research and the gas source even when quiet
        yield None


class Spotter(Agent):
    """arbitrum-spotter: gas trend, sequencer timing, MEV bots, liquidity map (research.PLAN)."""
    FAMILY = "spotter"
    TASKS = {**Agent.TASKS, **research.declared("spotter"), "share-research": _ShareResearch}


class Analyst(Agent):
    """base-analyst: fee structure, OP-stack metrics, cross-DEX liquidity (research.PLAN)."""
    FAMILY = "analyst"
    TASKS = {**Agent.TASKS, **research.declared("analyst"), "share-research": _ShareResearch}


class Specialist(Agent):
    """polygon-specialist: gas volatility, block times, bridge gaps (research.PLAN)."""
    FAMILY = "specialist"
    TASKS = {**Agent.TASKS, **research.declared("specialist"), "share-research": _ShareResearch}


class Coordinator(Agent):
    """alphago-coordinator: learns from every outcome (roles/learning.py).  Its tasks read the
    `opportunities` and `outcomes` databases (one joined view shared by all four), train and
    publish the send filter's model (`models`), and report on the team, the route shapes and
    the untried paths of the monitors' graph snapshots.  It prices nothing itself."""
    TASKS = {**Agent.TASKS, "collective-learning": learning.CollectiveLearning,
             "team-performance": learning.TeamPerformance,
             "strategy-effectiveness": learning.StrategyEffectiveness,
             "path-discovery": learning.NewPaths}

    def tasks(self):
        store = getattr(self.rt, "store", None)
        hub = learning.Outcomes()
        self.outcomes = hub
        self._team = [learning.TeamPerformance(hub, store, on_done=self._write_info)]
        return super().tasks() + [
            learning.CollectiveLearning(hub, store, announce=self._announce), *self._team,
            learning.StrategyEffectiveness(hub, store),
            learning.NewPaths(self._snapshots, hub, store)]

    def _announce(self, note: dict) -> None:
        """A new model version, to the outbox: every agent reads it (engine/config.py gives
        them this role's outbox) and loads the version at its next slice."""
        outbox = getattr(self.rt, "outbox", None)
        if outbox is not None:
            outbox.publish_many([note])

    def info(self) -> dict:
        doc = super().info()
        team = next((t for t in getattr(self, "_team", ()) if t.state.get("guide")), None)
        if team is not None:       # the guide's success metrics (roles/success.py)
            g = team.state["guide"]
            doc["guide"] = g
            doc["summary"] += (f"; guide: tasks {g['task_completion_rate']} done, "
                               f"{g['avg_task_ms']} ms avg, {g['discoveries_per_hour']} "
                               f"discoveries/h, decision p99 {g['decision_ms_p99']} ms")
        return doc

    def _snapshots(self) -> dict:
        """Every chain's graph snapshot, read again (topology moves: factories add pools)."""
        for c in self.replicas.graphs:
            self.replicas.graphs[c] = None
            self.replicas.load(c)
        return self.replicas.graphs


def __getattr__(name: str):
    """`roles.agents:Executor` (the old path) names roles/executor.py's kind; imported lazily,
    since that module builds on Agent."""
    if name == "Executor":
        from .executor import Executor
        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
