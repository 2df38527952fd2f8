"""The agents' side of the learning loop (roles/learning.py has the coordinator's): the newest
published model and measured gas, loaded between switches, used by the filter and the simulator.

    load-model (5 s) ──► ModelGate.load      models/send-filter: the model, used only if `active`
                    ├──► ModelGate.load_gas  models/gas-by-shape: gas units per route shape
                    └──► ModelGate.load_fork models/fork-tests: gas used per shape on a fork
    ChainPricer.price ─► ModelGate.judge(features, pools, key) ─► "learned: ..." refusal, or
                         None; an `explore` share of what it would refuse is let through, each
                         such outcome weighing 1/explore when later versions are judged
    ChainPricer._simulate ─► ModelGate.gas_for(action) ─► the Simulation's gas_used (the
                             larger of the two measurements where both exist)
    ChainPricer.price ─► ModelGate.fork_refusal(action) ─► "fork-test: ..." for a route whose
                         newest fork test reverted (not out of gas), for `fork_hold_s`

A record that cannot be used is logged once ("model record unusable" / "gas record unusable")
and the fixed rule / the static gas estimate stays.
"""
from __future__ import annotations

import hashlib
import time
from typing import NamedTuple

import orjson

from engine.arb.learn import History, Model, features
from engine.core.store.keys import prefix_bytes, seq_of
from engine.core.tasks import Priority, Task, TaskContext

MODEL_KEY = "send-filter"     # models/<MODEL_KEY>/<seq>: the newest is the one in use


class Judgement(NamedTuple):
    why: str | None          # a refusal ("learned: ..."), or None: send
    p: float | None          # the model's probability of landing (None: no model in use)
    version: int | None
    weight: float            # 1/explore for a decision the model refused but let through


def _unit(key: str) -> float:
    """A number in [0, 1) from the key: the same decision always draws the same."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


class ModelGate:
    """An agent's view of the newest published model: the learned half of its filter."""

    def __init__(self, log=None, fork_hold_s: float = 3600.0, clock=time.time,
                 explore: float = 0.0):
        self.log, self.fork_hold_s, self.clock = log, float(fork_hold_s), clock
        self.explore = min(1.0, max(0.0, float(explore)))
        self.explored = 0
        self.seq = 0                  # the models record last looked at
        self.model: Model | None = None
        self.history = History()      # our sends per pool, as of the model's training
        self.record: dict = {}
        self.why = "no model published yet: the fixed rule alone"
        self.refused = self.judged = 0
        self.gas: dict[str, int] = {}  # route shape -> measured gas units (contract-optimisation)
        self.gas_seq = 0
        self.fork_gas: dict[str, int] = {}  # route shape -> gas used on a fork (fork-testing)
        self.fork_seq = 0
        self.failing: dict[str, dict] = {}  # route -> its newest fork test's revert (fork-testing)
        self.fork_refused = 0

    def load(self, store) -> bool:
        """Read the newest record; True if the model in use changed.  Never raises on a bad
        record: it is logged once and the fixed rule stays."""
        if store is None:
            return False
        p = prefix_bytes(MODEL_KEY)
        with store.read() as r:
            newest = next(iter(r.items("models", p, reverse=True)), None)
        if newest is None or seq_of(newest[0]) == self.seq:
            return False
        self.seq = seq_of(newest[0])
        try:
            rec = orjson.loads(newest[1])
            if not isinstance(rec, dict):
                raise ValueError(f"a {type(rec).__name__}, not an object")
            model = Model.from_dict(rec.get("params") if isinstance(rec.get("params"), dict) else {})
            history = History.from_dict(rec["history"]) if "history" in rec else History()
        except (ValueError, orjson.JSONDecodeError) as e:
            self.model, self.record = None, {}
            self.why = f"models/{MODEL_KEY}/{self.seq} unusable ({str(e)[:120]}): the fixed rule alone"
            if self.log is not None:
                self.log.warning("model record unusable: the fixed rule alone",
                                 record=f"models/{MODEL_KEY}/{self.seq}", error=str(e)[:200])
            return True
        self.record = {k: rec.get(k) for k in ("version", "train_size", "held_back", "fixed",
                                               "model", "active", "reason")}
        if rec.get("active") is True:
            self.model, self.history, self.why = model, history, ""
        else:
            self.model = None
            self.why = f"model v{model.version} not in use ({rec.get('reason')}): the fixed rule alone"
        if self.log is not None:
            self.log.info("model loaded", version=model.version, active=self.model is not None,
                          train_size=rec.get("train_size"), reason=str(rec.get("reason"))[:120])
        return True

    def load_gas(self, store) -> bool:
        """The newest `models/gas-by-shape` record (roles/research/contract.py); True if it
        changed.  A bad record keeps the static estimate, with a log line."""
        from .research.contract import GAS_KEY
        gas, self.gas_seq, changed, _ = self._load_shapes(store, GAS_KEY, "units", self.gas_seq)
        if changed:
            self.gas = gas
        return changed

    def load_fork(self, store) -> bool:
        """The newest `models/fork-tests` record (roles/research/fork.py): the gas used per
        route shape in landed fork tests, and the routes whose newest test reverted; True if
        it changed."""
        from .research.fork import FORK_KEY
        gas, self.fork_seq, changed, rec = self._load_shapes(store, FORK_KEY, "gas_used",
                                                             self.fork_seq)
        if changed:
            self.fork_gas = gas
            failing = rec.get("failing") if isinstance(rec, dict) else None
            self.failing = {str(k): v for k, v in failing.items()
                            if isinstance(v, dict) and isinstance(v.get("at"), (int, float))} \
                if isinstance(failing, dict) else {}
        return changed

    def _load_shapes(self, store, key: str, field: str, seen: int) -> tuple[dict, int, bool, dict]:
        """({shape: units}, its seq, changed, the record) from the newest models/<key>
        record's "shapes"; a bad record gives {} with a log line."""
        if store is None:
            return {}, seen, False, {}
        with store.read() as r:
            newest = next(iter(r.items("models", prefix_bytes(key), reverse=True)), None)
        if newest is None or seq_of(newest[0]) == seen:
            return {}, seen, False, {}
        seq = seq_of(newest[0])
        try:
            rec = orjson.loads(newest[1])
            gas = {str(k): int(v[field]) for k, v in rec["shapes"].items()}
            if not all(21_000 <= u <= 30_000_000 for u in gas.values()):
                raise ValueError("gas units outside 21 000-30 000 000")
        except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as e:
            if self.log is not None:
                self.log.warning("gas record unusable: the static estimate alone",
                                 record=f"models/{key}/{seq}", error=str(e)[:200])
            return {}, seq, True, {}
        return gas, seq, True, rec

    def gas_for(self, action) -> int | None:
        """The measured gas of the action's route shape: contract-optimisation's estimate and
        fork-testing's gas used in a mined transaction, the larger where both exist."""
        if not self.gas and not self.fork_gas:
            return None
        from .research.contract import action_shape
        shape = action_shape(action)
        units = [g[shape] for g in (self.gas, self.fork_gas) if shape in g]
        return max(units) if units else None

    def fork_refusal(self, action) -> str | None:
        """A refusal for a route whose newest fork test reverted (not out of gas) less than
        `fork_hold_s` ago: on the fork it was alone, so the agent's model of it is wrong."""
        if not self.failing:
            return None
        from .research.fork import route_key
        f = self.failing.get(route_key(action))
        if f is None or self.clock() - float(f["at"]) > self.fork_hold_s:
            return None
        self.fork_refused += 1
        return (f"fork-test: this route reverted on a fork at block {f.get('block')} "
                f"({str(f.get('verdict'))[:120]})")

    def judge(self, feats: dict, pools=(), key: str = "") -> Judgement:
        """The model's word on one approved decision (its features, its route's pools, its
        event key); Judgement(None, None, None, 1.0) without a model in use.

        Exploration: the decisions the model would refuse have no outcome, so a model judged
        on later outcomes would only ever see what its predecessor let through.  A share
        `explore` of them is let through (chosen by a hash of the key: reproducible), and each
        outcome of one weighs 1/explore (inverse propensity) when a later version is judged
        against the fixed rule (engine/arb/learn.score)."""
        m = self.model
        if m is None:
            return Judgement(None, None, None, 1.0)
        x = features(feats)
        x["route_failed"] = self.history.failed(pools)
        p = m.p(x)
        self.judged += 1
        if p >= m.threshold:
            return Judgement(None, p, m.version, 1.0)
        if self.explore > 0 and _unit(key) < self.explore:
            self.explored += 1
            return Judgement(None, p, m.version, round(1.0 / self.explore, 6))
        self.refused += 1
        return Judgement(f"learned: model v{m.version} gives it p={p:.3f} < {m.threshold} of "
                         "landing", p, m.version, 1.0)

    def info(self) -> dict:
        return {"in_use": self.model is not None, "version": self.record.get("version"),
                "why": self.why, "judged": self.judged, "refused": self.refused,
                "explored": self.explored, "explore": self.explore,
                "gas_shapes": len(self.gas), "fork_shapes": len(self.fork_gas),
                "fork_failing": len(self.failing), "fork_refused": self.fork_refused,
                "held_back": {k: self.record.get(k) for k in ("fixed", "model")}
                if self.record else None}


class LoadModel(Task):
    """Between switches: the newest `models` record into the role's ModelGate."""
    name = "load-model"
    priority = Priority.MEDIUM
    interval = 5.0

    def __init__(self, gate: ModelGate | None = None, store=None, on_load=None, **kw):
        """`on_load()`: after the first run and every run that loaded something (the agent
        rewrites its status info, so `status` shows the model in use at once)."""
        super().__init__(**kw)
        self.gate, self.store, self.on_load = gate or ModelGate(), store, on_load
        self._ran = False

    def initial_state(self):
        return {"loads": 0, "version": None, "in_use": False}

    def run(self, ctx: TaskContext):
        news = not self._ran
        self._ran = True
        if self.gate.load_gas(self.store):
            self.state["gas_shapes"] = len(self.gate.gas)
            news = True
        if self.gate.load_fork(self.store):
            self.state["fork_shapes"] = len(self.gate.fork_gas)
            news = True
        if self.gate.load(self.store):
            self.state.update(loads=self.state["loads"] + 1,
                              version=self.gate.record.get("version"),
                              in_use=self.gate.model is not None, summary=self.gate.why or
                              f"model v{self.gate.record.get('version')} in use")
            news = True
        if news and self.on_load is not None:
            self.on_load()
        yield None
