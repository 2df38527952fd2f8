"""The learning loop and the coordinator's team-level research (issue 13).

    agent decides ──► `opportunities/<agent>` record with its `features` (roles/pricing.py)
    executor acts ──► `outcomes/<executor>` records, the newest per Action its state
    coordinator (alphago-coordinator, roles.agents:Coordinator), in its background tasks:
        Outcomes.catch_up   reads both databases after its cursors, a few records per step, and
                            joins each approved decision with its final outcome
                            (engine/arb/learn.sample), keyed `<agent>|<event>` as the ledger is
        collective-learning (5 min)  trains engine/arb/learn.Model on the older 70 % of the
                            joined outcomes, scores it beside the fixed rule on the latest 30 %
                            (held back by time), and appends the result to `models/send-filter`
        team-performance (1 h)       per agent and per executor: decisions, approvals, refusals
                            by code, outcomes by state, realised profit, success rate
        strategy-effectiveness (2 h) per route shape (chain, hops, loan source, dexes): sent,
                            landed, precision, profit per transaction, best and worst shapes
        path-discovery (1 h) the cycles of the monitors' graph snapshots, and the ones no
                            decision ever took (untried routes)
    agents ──► load-model task (5 s, roles/modelgate.py): the newest `models/send-filter` record; used
               by the filter only if it is `active`: trained on >= min_train outcomes and beat
               the fixed rule on held-back outcomes in both precision and profit per tx; a
               record that cannot be read is logged once and the fixed rule stays.

The `models` record (DEVELOPING.md, "The learning loop", has the full format):
    {"version", "trained_at", "train_size", "held_back", "held_back_how", "fixed": {sent,
     precision, profit_per_tx}, "model": {sent, precision, profit_per_tx, version}, "beats_fixed",
     "active", "reason", "params": Model.to_dict(), "history": History.to_dict()}
"""
from __future__ import annotations

import time

import orjson

from engine.arb.learn import DEFAULT_FEATURES, Model, evaluate, sample, split, with_history
from engine.core.tasks import Failed, NotReady, Priority, Task, TaskContext, Wait

from .modelgate import MODEL_KEY, LoadModel, ModelGate  # noqa: F401 (the agents' side, re-exported)
from .success import guide_metrics

CHUNK = 64                    # records decoded per step
KEEP = 50_000                 # joined outcomes (and decisions waiting for one) kept in memory
FINAL = ("refused", "paper", "rejected", "landed", "reverted", "dropped", "replaced")


def read_after(store, db: str, prefix: str, after: int, n: int = CHUNK) -> list[tuple[int, object]]:
    """Up to n (seq, record) under prefix after `after`, in one short read transaction; a record
    that does not decode is (seq, None) so the cursor moves past it."""
    out = []
    with store.read() as r:
        for seq, raw in r.raw_after(db, prefix, after):
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                rec = None
            out.append((seq, rec))
            if len(out) >= n:
                break
    return out


def prefixes(store, db: str) -> list[str]:
    with store.read() as r:
        return r.prefixes(db)


def shape(opp: dict) -> str:
    """A route's shape: chain, hops, loan source and its dexes in order."""
    route = opp.get("route") or []
    dexes = "/".join(str(h.get("dex") or h.get("kind") or "?") for h in route)
    loan = (opp.get("loan") or {}).get("source") or "?"
    return f"{opp.get('chain')}:{len(route)}-hop:{loan}:{dexes}"


class Outcomes:
    """The coordinator's joined view of decisions and outcomes, read incrementally from LMDB.
    In memory only: after a restart it is read again from the start (the records are in LMDB;
    checkpointing a copy would double them)."""

    def __init__(self):
        self.cursors: dict[str, int] = {}          # "<db>/<prefix>" -> last seq read
        self.waiting: dict[str, dict] = {}         # key -> the approved decision's record (slim)
        self.ledger: dict[str, dict] = {}          # key -> its outcome so far (fields accumulate)
        self.samples: dict[str, dict] = {}         # key -> engine/arb/learn.sample
        self.agents: dict[str, dict] = {}          # agent -> decisions, approved, by code
        self.executors: dict[str, dict] = {}       # executor -> outcomes by state, profit
        self.bad = 0
        self.routes: set[tuple] = set()            # pool sets of the routes decisions took
        self.decision_ms: list[float] = []         # search + decide of the newest priced ones
        self.response_ms: list[float] = []         # log arrival -> decision, the newest ones
        self.last_read = 0.0

    def catch_up(self, store):
        """Read what is new in `opportunities` and `outcomes`, a chunk per step."""
        if store is None:
            raise Failed("the role has no store")
        for db, take in (("opportunities", self._decision), ("outcomes", self._outcome)):
            for prefix in prefixes(store, db):
                cur = f"{db}/{prefix}"
                while True:
                    part = read_after(store, db, prefix, self.cursors.get(cur, 0))
                    for seq, rec in part:
                        self.cursors[cur] = seq
                        if isinstance(rec, dict):
                            take(prefix, rec)
                        else:
                            self.bad += 1
                    yield None
                    if len(part) < CHUNK:
                        break
        self.last_read = time.time()

    def _decision(self, role: str, rec: dict) -> None:
        a = self.agents.setdefault(role, {"decisions": 0, "approved": 0, "refused": {}})
        a["decisions"] += 1
        us = [rec.get(k) for k in ("search_us", "decide_us")]
        if all(isinstance(u, (int, float)) for u in us):
            self.decision_ms.append(round(sum(us) / 1000, 3))
            if len(self.decision_ms) > 5000:
                del self.decision_ms[:1000]
        t0, t1 = rec.get("t_origin"), rec.get("t_decided")      # monotonic ns, one machine
        if isinstance(t0, int) and isinstance(t1, int) and 0 < t0 <= t1:
            self.response_ms.append(round((t1 - t0) / 1e6, 3))
            if len(self.response_ms) > 5000:
                del self.response_ms[:1000]
        if not rec.get("approved"):
            code = str(rec.get("code") or "?")
            a["refused"][code] = a["refused"].get(code, 0) + 1
            return
        a["approved"] += 1
        route = rec.get("route") or []
        self.routes.add(tuple(sorted(str(h.get("pool")) for h in route)))
        key = f"{rec.get('role') or role}|{rec.get('event')}"
        slim = {k: rec.get(k) for k in ("features", "gas_cost_token", "gas_units", "chain",
                                         "route", "loan", "pool", "model")}
        self.waiting[key] = slim
        self._bound(self.waiting)
        self._join(key)

    def _outcome(self, role: str, rec: dict) -> None:
        key = rec.get("key")
        if not isinstance(key, str):
            self.bad += 1
            return
        prev = self.ledger.get(key)
        acc = {**(prev or {}), **rec}
        if acc.get("t_first") is None:
            # the first record with a wall time: the executor's "accepted" record has only
            # monotonic stamps, so the first `t` is that of "signed" (or of the refusal)
            acc["t_first"] = rec.get("t") if isinstance(rec.get("t"), (int, float)) else None
        acc["executor"] = role
        self.ledger[key] = acc
        self._bound(self.ledger)
        state = rec.get("state")
        if state in FINAL:
            e = self.executors.setdefault(role, {"states": {}, "realised": {}, "simulated": {}})
            e["states"][state] = e["states"].get(state, 0) + 1
            tok = str(acc.get("token") or acc.get("chain") or "?")
            for f, state_of in (("realised", "landed"), ("simulated", "paper")):
                if state == state_of:
                    try:
                        e[f][tok] = e[f].get(tok, 0) + int(acc.get(f) or 0)
                    except (TypeError, ValueError):
                        self.bad += 1
            self._join(key)

    def _join(self, key: str) -> None:
        opp, out = self.waiting.get(key), self.ledger.get(key)
        if opp is None or out is None or out.get("state") not in FINAL:
            return
        s = sample(opp, out)
        if s is not None:
            s["shape"] = shape(opp)
            s["pools"] = [str(h.get("pool")) for h in opp.get("route") or []]
            s["trigger"] = opp.get("pool")
            if isinstance(out.get("gas_used"), int):      # mined: what the route really cost
                s["gas_used"], s["gas_est"] = out["gas_used"], opp.get("gas_units")
            self.samples[key] = s
            self._bound(self.samples)
        self.waiting.pop(key, None)

    @staticmethod
    def _bound(d: dict) -> None:
        while len(d) > KEEP:
            d.pop(next(iter(d)))

    def ordered(self) -> list[dict]:
        """The joined outcomes in time order (when the executor first took each)."""
        return sorted(self.samples.values(), key=lambda s: _when(s.get("t")))


def _when(t) -> float:
    """A record's time as a number (0 for a missing or malformed one: it sorts first)."""
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0


class CoordinatorTask(Task):
    """A task over the coordinator's shared Outcomes."""
    priority = Priority.LOW

    def __init__(self, hub: Outcomes | None = None, store=None, on_done=None, **kw):
        super().__init__(**kw)
        self.hub, self.store, self.on_done = hub or Outcomes(), store, on_done


class CollectiveLearning(CoordinatorTask):
    name = "collective-learning"
    priority = Priority.MEDIUM
    interval = 300.0
    OPTIONS = {"min_train": (int, 60, "outcomes the model must be trained on before it is used"),
               "held_back": (float, 0.3, "the latest share of outcomes held back to test it"),
               "epochs": (int, 5, "passes over the training outcomes"),
               "threshold": (float, 0.5, "the model sends what it gives at least this probability"),
               "features": (list, list(DEFAULT_FEATURES), "the model's inputs, of "
                            "engine/arb/learn.FEATURES")}

    def __init__(self, hub: Outcomes | None = None, store=None, on_done=None, announce=None,
                 **kw):
        """`announce(note)`: called with a small record once a new version is committed
        (the Coordinator publishes it to its outbox, which every agent reads)."""
        super().__init__(hub, store, on_done, **kw)
        self.announce = announce

    def initial_state(self):
        return {"version": 0, "trained_on": 0, "summary": "no outcomes yet"}

    def run(self, ctx: TaskContext):
        yield from self.hub.catch_up(self.store)
        data = self.hub.ordered()
        st = self.state
        held = min(0.9, max(0.05, float(self.options["held_back"])))
        need = int(self.options["min_train"])
        if len(data) < 10 or len(data) == st.get("trained_on"):
            if not st.get("version"):       # else the summary stays the last model's
                st["summary"] = (f"{len(data)} joined outcomes: too few to train on"
                                 if data else "no joined outcomes yet")
            return
        try:
            m = Model(threshold=float(self.options["threshold"]),
                      features=tuple(self.options["features"]))
        except ValueError as e:
            raise Failed(f"options.features: {e}") from None
        train, test = split(data, held)
        # route_failed: each training outcome from those before it; the held-back ones from
        # the training part's history, frozen (as the agents use a published one)
        train, hist = with_history(train)
        test, _ = with_history(test, hist, learn=False)
        yield from m.fit_steps(train, int(self.options["epochs"]))
        ev = evaluate(m, test)
        for x in test:                  # what the agents judge with: every joined outcome's
            hist.add(x.get("pools") or (), bool(x["landed"]))
        yield None
        with self.store.read() as r:       # versions continue across restarts and coordinators
            last = r.last("models", MODEL_KEY)
        version = max(int(st.get("version") or 0),
                      int(last.get("version") or 0) if isinstance(last, dict) else 0) + 1
        m.version = version
        active = bool(ev["beats_fixed"]) and len(train) >= need
        reason = ("beats the fixed rule on held-back outcomes" if active else
                  f"trained on {len(train)} < {need} outcomes" if len(train) < need else
                  "does not beat the fixed rule on held-back outcomes")
        rec = {"version": version, "trained_at": round(time.time(), 3), "by": ctx.role,
               "train_size": len(train), "held_back": len(test), "explored": ev["explored"],
               "held_back_how": f"the latest {held:.0%} of joined outcomes by time",
               "fixed": ev["fixed"], "model": {**ev["model"], "version": version},
               "beats_fixed": ev["beats_fixed"], "active": active, "reason": reason,
               "weights": dict(zip(m.features, (round(w, 4) for w in m.weights))),
               "params": m.to_dict(), "history": hist.to_dict()}
        job = self.store.append_many("models", MODEL_KEY, [rec])
        st.update(version=version, trained_on=len(data), active=active,
                  summary=f"model v{version}: precision {ev['model']['precision']} vs fixed "
                          f"{ev['fixed']['precision']} on {len(test)} held back; "
                          f"{'in use' if active else 'not in use: ' + reason}")
        ctx.discover(self.name, {"kind": "model", "pools_known": len(hist.counts),
                                 **{k: rec[k] for k in rec if k not in ("params", "history")}})
        yield None
        if self.announce is not None and job is not None:
            # the agents read the record when they hear of it: only once it is committed
            while not job.done():
                yield Wait(until=time.monotonic() + 0.002)
            if job.error is None:
                self.announce({"kind": "model", "model": MODEL_KEY, "version": version,
                               "active": active, "by": ctx.role})


class TeamPerformance(CoordinatorTask):
    name = "team-performance"
    interval = 3600.0

    def initial_state(self):
        return {"runs": 0, "summary": ""}

    def run(self, ctx: TaskContext):
        yield from self.hub.catch_up(self.store)
        h = self.hub
        agents = {r: {**a, "approval_rate": round(a["approved"] / a["decisions"], 4)
                      if a["decisions"] else None} for r, a in h.agents.items()}
        execs = {}
        for r, e in h.executors.items():
            s = e["states"]
            tried = sum(s.get(k, 0) for k in ("landed", "paper", "reverted", "dropped",
                                               "rejected", "replaced"))
            won = s.get("landed", 0) + s.get("paper", 0)
            execs[r] = {"states": dict(s), "success_rate": round(won / tried, 4) if tried else None,
                        "realised": {t: str(v) for t, v in e["realised"].items()},
                        "simulated": {t: str(v) for t, v in e["simulated"].items()}}
        guide = guide_metrics(self.store, h.decision_ms, h.response_ms)
        yield None
        st = self.state
        st["runs"] += 1
        st["guide"] = guide
        st["summary"] = "; ".join(
            [f"guide: tasks {guide['task_completion_rate']} done, {guide['avg_task_ms']} ms, "
             f"{guide['discoveries_per_hour']} discoveries/h, decision p99 "
             f"{guide['decision_ms_p99']} ms"] +
            [f"{r}: {a['decisions']} decisions, {a['approved']} approved" for r, a in agents.items()]
            + [f"{r}: success {x['success_rate']}" for r, x in execs.items()]) or "no records yet"
        ctx.discover(self.name, {"kind": "team-performance", "agents": agents, "executors": execs,
                                 "joined": len(h.samples), "unreadable": h.bad, "guide": guide})
        if self.on_done is not None:
            self.on_done()          # the role's status info shows the guide's metrics
        yield None


class StrategyEffectiveness(CoordinatorTask):
    name = "strategy-effectiveness"
    interval = 7200.0

    def initial_state(self):
        return {"runs": 0, "summary": ""}

    def run(self, ctx: TaskContext):
        yield from self.hub.catch_up(self.store)
        by: dict[str, dict] = {}
        gas: dict[str, list] = {}
        for i, s in enumerate(self.hub.samples.values()):
            b = by.setdefault(s.get("shape", "?"), {"sent": 0, "landed": 0, "profit": 0})
            b["sent"] += 1
            b["landed"] += int(bool(s["landed"]))
            b["profit"] += int(s["profit"])
            if isinstance(s.get("gas_used"), int) and isinstance(s.get("gas_est"), int):
                gas.setdefault(s.get("shape", "?"), []).append((s["gas_used"], s["gas_est"]))
            if i % 256 == 255:
                yield None
        rows = [{"shape": k, **v, "precision": round(v["landed"] / v["sent"], 4),
                 "profit_per_tx": v["profit"] // v["sent"], "profit": str(v["profit"])}
                for k, v in by.items()]
        # gas efficiency: what each shape used on chain beside the agents' static estimate
        # (engine/arb/profit.estimate_gas); a shape far above it runs out of gas at the limit
        gas_rows = {k: {"mined": len(v), "used_mean": sum(u for u, _ in v) // len(v),
                        "used_max": max(u for u, _ in v),
                        "estimated_mean": sum(e for _, e in v) // len(v),
                        "used_over_estimate": round(sum(u for u, _ in v) / max(1, sum(e for _, e in v)), 3)}
                    for k, v in gas.items()}
        self.state["gas"] = gas_rows
        rows.sort(key=lambda r: (-r["precision"], -r["sent"]))
        st = self.state
        st["runs"] += 1
        st["summary"] = (f"{len(rows)} route shapes; best {rows[0]['shape']} "
                         f"({rows[0]['precision']:.0%} of {rows[0]['sent']})" if rows
                         else "no joined outcomes yet")
        if rows:
            ctx.discover(self.name, {"kind": "strategy-effectiveness", "shapes": len(rows),
                                     "best": rows[:5], "worst": rows[-5:][::-1],
                                     "gas": dict(sorted(gas_rows.items(), key=lambda kv:
                                                        -kv[1]["used_over_estimate"])[:10])})
        yield None


class NewPaths(CoordinatorTask):
    """The cycles of the monitors' graph snapshots (reloaded every run: topology is what
    matters here), and those no decision ever took: routes nobody has tried yet."""
    name = "path-discovery"
    interval = 3600.0

    def __init__(self, graphs=None, hub=None, store=None, **kw):
        super().__init__(hub, store, **kw)
        self.graphs = graphs or (lambda: {})

    def initial_state(self):
        return {"runs": 0, "cycles": {}, "untried": {}, "summary": ""}

    def run(self, ctx: TaskContext):
        yield from self.hub.catch_up(self.store)
        graphs = {c: g for c, g in (self.graphs() or {}).items() if g is not None and len(g)}
        if not graphs:
            raise NotReady("no pool graph snapshot to search (no monitor has written one)")
        st = self.state
        for chain, g in graphs.items():
            seen: set = set()
            for i, address in enumerate(list(g.pools)):
                seen.update(g.cycles_through(address))
                if i % 4 == 3:
                    yield None
            pools_of = {tuple(sorted(str(x) for x in _cycle_pools(c))) for c in seen}
            untried = len(pools_of - self.hub.routes)
            before = st["cycles"].get(chain, 0)
            st["cycles"][chain], st["untried"][chain] = len(pools_of), untried
            if len(pools_of) != before or st["runs"] == 0:
                ctx.discover(self.name, {"kind": "paths", "chain": chain, "cycles": len(pools_of),
                                         "new": len(pools_of) - before, "untried": untried,
                                         "pools": len(g)})
        st["runs"] += 1
        st["summary"] = ", ".join(f"{c}: {n} cycles, {st['untried'][c]} untried"
                                  for c, n in st["cycles"].items())


def _cycle_pools(cycle) -> list[str]:
    """A cached cycle's pools (engine/arb/graph.py keeps them as (pool, token) legs or pools)."""
    out = []
    for leg in cycle:
        out.append(leg[0] if isinstance(leg, tuple) else getattr(leg, "pool", leg))
    return out
