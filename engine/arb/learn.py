"""Learning from outcomes: which approved opportunities to send (pure; no I/O, no ML stack).

    features(rec) ──► x            from what the decision knew when it was made (FEATURES)
    History                        our own sends through each pool and how many landed: the
                                   `route_failed` feature (the smoothed failure share of the
                                   route's worst pool), from outcomes earlier than the decision
    Model.update(x, landed)        online logistic regression over the model's own `features`
                                   (a subset of FEATURES): SGD on the log loss, L2, with each
                                   feature standardised by its running mean and variance
    Model.p(x)                     the probability that a send of it lands with a profit
    Model.send(x)                  p >= threshold: the confidence filter's second half (the
                                   fixed rule, confidence >= 0.95 from the exact re-quote,
                                   stays the first)
    evaluate(model, outcomes)      on held-back outcomes: precision of "send" and realised
                                   profit per transaction sent, model beside the fixed rule
                                   (send everything the rule approved)

An outcome is {"features": {...}, "landed": bool, "profit": realised profit in the profit
token, negative for the gas of a revert}.  `split` holds back the *latest* share of outcomes
(chronological, never shuffled: a model is only ever used on the future, and the devnet's
rival and pools drift), so a model is judged on outcomes it never saw, later than all it saw.
`Model.to_dict()` / `from_dict` give an orjson-ready, versioned form for LMDB (`models`).

The loop around it (roles/learning.py): the agent computes `decision_features` when it decides
and records them with the decision (`opportunities`); the executor's ledger (`outcomes`) says
what became of each Action; `sample(opportunity, outcome)` joins the two into one outcome above
(None when the outcome says nothing about the trade: the executor was halted, had no contract
for the chain, or was down).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

FEATURES = ("margin_bps", "log_depth", "hops", "contested", "trigger_contested", "state_age_s",
            "gas_share", "route_failed", "arbitrum", "base", "polygon")
CHAINS = FEATURES[-3:]
RECORDED = tuple(k for k in FEATURES[:-3] if k != "route_failed")   # in the decision record
# What a model uses unless told otherwise: what says a rival takes the route first (mev-watch's
# shares) and our own history through its pools.  With the ~100 outcomes a short devnet run
# gives, the margin, depth, hops, age and gas inputs let the fit chase noise: on the held-back
# part it then refused some of the most profitable routes (DEVELOPING.md, the learning loop).
DEFAULT_FEATURES = ("route_failed", "contested", "trigger_contested")


def features(rec: dict) -> dict[str, float]:
    """The features of one opportunity record (missing ones are 0: the model learns their
    weight as it sees them)."""
    f = {}
    for k in RECORDED:
        try:
            f[k] = float(rec.get(k) or 0.0)
        except (TypeError, ValueError):     # a record from a bad writer: that feature is 0
            f[k] = 0.0
        if not math.isfinite(f[k]):
            f[k] = 0.0
    chain = rec.get("chain")
    for c in CHAINS:
        f[c] = 1.0 if chain == c else 0.0
    f["route_failed"] = History.BASE      # known only beside a History (with_history, judge)
    return f


class History:
    """Our sends through each pool and how many landed; `failed(pools)` is the route's worst
    pool's failure share, smoothed towards BASE by PRIOR pseudo-sends (a pool never tried is
    BASE).  A rival that back-runs some pools first makes our trades through them fail: the
    share finds them from our own outcomes, where mev-watch's needs the rival's pattern."""
    PRIOR, BASE, KEEP = 2.0, 0.5, 5000

    def __init__(self, counts: dict | None = None):
        self.counts: dict[str, list[int]] = counts or {}     # pool -> [sent, landed]

    def rate(self, pool: str) -> float:
        sent, landed = self.counts.get(pool.lower(), (0, 0))
        return (sent - landed + self.PRIOR * self.BASE) / (sent + self.PRIOR)

    def failed(self, pools) -> float:
        return max((self.rate(p) for p in pools), default=self.BASE)

    def add(self, pools, landed: bool) -> None:
        for p in {str(p).lower() for p in pools}:
            c = self.counts.setdefault(p, [0, 0])
            c[0] += 1
            c[1] += int(bool(landed))
        while len(self.counts) > self.KEEP:
            self.counts.pop(next(iter(self.counts)))

    def to_dict(self) -> dict:
        return {"prior": self.PRIOR, "base": self.BASE, "pools": self.counts}

    @classmethod
    def from_dict(cls, d) -> "History":
        if not isinstance(d, dict) or not isinstance(d.get("pools"), dict):
            raise ValueError("history must be an object with a 'pools' object")
        counts = {}
        for p, c in d["pools"].items():
            if not (isinstance(c, list) and len(c) == 2 and all(isinstance(x, int) for x in c)
                    and 0 <= c[1] <= c[0]):
                raise ValueError(f"history of pool {p!r} must be [sent, landed], not {c!r}")
            counts[str(p).lower()] = list(c)
        return cls(counts)


def with_history(outcomes: list[dict], history: History | None = None,
                 learn: bool = True) -> tuple[list[dict], History]:
    """The outcomes (time order) with `route_failed` from `history` as it stood before each;
    `learn` adds each outcome to it after (training), else it stays as given (held back: the
    history a published model carries is frozen until the next version)."""
    h = history if history is not None else History()
    out = []
    for o in outcomes:
        pools = o.get("pools") or ()
        out.append({**o, "features": {**o["features"], "route_failed": h.failed(pools)}})
        if learn:
            h.add(pools, bool(o["landed"]))
    return out, h


def decision_features(*, chain: str, amount_in: int, net: int, gross: int, gas_token: int,
                      depth: int, hops: int, contested: float, age_s: float,
                      trigger_contested: float = 0.0) -> dict:
    """The record an agent keeps with a decision (its `features` field): `features()` of it
    is the model's input.  Amounts are in the route's profit token."""
    return {"chain": chain, "hops": hops, "contested": round(float(contested), 4),
            "trigger_contested": round(float(trigger_contested), 4),
            "margin_bps": round(net / amount_in * 1e4, 4) if amount_in > 0 else 0.0,
            "log_depth": round(math.log10(depth), 4) if depth > 0 else 0.0,
            "state_age_s": round(max(0.0, float(age_s)), 6),
            "gas_share": round(gas_token / gross, 6) if gross > 0 else 1.0}


# an executor refusal that says nothing about the trade (its own state, not the market's)
NOT_THE_TRADE = ("halted", "no executor contract", "bad action")
WON = ("landed", "paper")


def sample(opp: dict, outcome: dict) -> dict | None:
    """One training outcome from an opportunity record (with `features`) and the newest state
    of its Action on the executor's ledger; None if it is not final or not about the trade.

    landed: realised profit (live) or the eth_call's simulated profit (paper), less the gas
    the agent priced; reverted: minus that gas; refused (eth_call, re-quote, stale), dropped,
    rejected, replaced: 0 (nothing was spent, nothing made)."""
    state = outcome.get("state")
    if state not in ("landed", "paper", "reverted", "refused", "dropped", "rejected", "replaced"):
        return None
    reason = str(outcome.get("reason") or "")
    if state == "refused" and (reason.startswith(NOT_THE_TRADE) or " is down" in reason):
        return None
    f = opp.get("features")
    if not isinstance(f, dict):
        return None
    gas = _int_or(opp.get("gas_cost_token"), 0)
    if state == "landed":
        profit = _int_or(outcome.get("realised"), 0) - gas
    elif state == "paper":
        profit = _int_or(outcome.get("simulated"), 0) - gas
    elif state == "reverted":
        profit = -gas
    else:
        profit = 0
    m = opp.get("model")
    w = m.get("explore_weight") if isinstance(m, dict) else None
    weight = float(w) if isinstance(w, (int, float)) and 1.0 <= w <= 1000.0 else 1.0
    return {"features": features(f), "landed": state in WON, "profit": profit,
            "state": state, "t": outcome.get("t_first") or outcome.get("t") or 0,
            "weight": weight}


def _int_or(x, default: int) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return default


def check_features(names) -> tuple[str, ...]:
    """A model's feature list: known names (FEATURES), at least one, none twice."""
    names = tuple(names or ())
    unknown = [n for n in names if n not in FEATURES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"model features {list(names)}: each one of {list(FEATURES)}, at least "
                         f"one, none twice" + (f" (unknown: {unknown})" if unknown else ""))
    return names


@dataclass
class Model:
    lr: float = 0.05
    l2: float = 1e-4
    threshold: float = 0.5
    version: int = 0
    n: int = 0
    features: tuple = DEFAULT_FEATURES
    weights: list = field(default_factory=list)
    bias: float = 0.0
    mean: list = field(default_factory=list)
    m2: list = field(default_factory=list)

    def __post_init__(self):
        self.features = check_features(self.features)
        k = len(self.features)
        for name in ("weights", "mean", "m2"):
            if not getattr(self, name):
                setattr(self, name, [0.0] * k)

    def _vector(self, x: dict[str, float]) -> list[float]:
        return [float(x.get(k, 0.0)) for k in self.features]

    def _scaled(self, v: list[float]) -> list[float]:
        if self.n < 2:
            return [0.0] * len(v)
        out = []
        for i, x in enumerate(v):
            sd = math.sqrt(self.m2[i] / (self.n - 1))
            out.append((x - self.mean[i]) / sd if sd > 1e-12 else 0.0)
        return out

    def p(self, x: dict[str, float]) -> float:
        z = self.bias + sum(w * s for w, s in zip(self.weights, self._scaled(self._vector(x))))
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))

    def send(self, x: dict[str, float]) -> bool:
        return self.n == 0 or self.p(x) >= self.threshold    # untrained: the fixed rule alone

    def update(self, x: dict[str, float], landed: bool) -> None:
        v = self._vector(x)
        self.n += 1
        for i, xi in enumerate(v):            # Welford: the running mean and variance
            d = xi - self.mean[i]
            self.mean[i] += d / self.n
            self.m2[i] += d * (xi - self.mean[i])
        s = self._scaled(v)
        err = self.p(x) - (1.0 if landed else 0.0)
        self.bias -= self.lr * err
        self.weights = [w - self.lr * (err * si + self.l2 * w) for w, si in zip(self.weights, s)]

    def fit(self, outcomes: list[dict], epochs: int = 5) -> "Model":
        for _ in self.fit_steps(outcomes, epochs):
            pass
        return self

    def fit_steps(self, outcomes: list[dict], epochs: int = 5, every: int = 64):
        """`fit` a few updates at a time: yields after every `every` updates (a background
        task's safe points); the version moves once the fit is complete."""
        for _ in range(epochs):
            for i, o in enumerate(outcomes):
                self.update(o["features"], bool(o["landed"]))
                if i % every == every - 1:
                    yield None
        self.version += 1

    def to_dict(self) -> dict:
        return {"version": self.version, "n": self.n, "features": list(self.features),
                "lr": self.lr, "l2": self.l2, "threshold": self.threshold,
                "weights": self.weights, "bias": self.bias, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, d: dict) -> "Model":
        if not isinstance(d.get("features"), list):
            raise ValueError(f"model features must be a list of names, not {d.get('features')!r}")
        names = check_features(d["features"])
        n = len(names)
        for k in ("weights", "mean", "m2"):
            if not isinstance(d.get(k), list) or len(d[k]) != n:
                raise ValueError(f"model field {k!r} must be a list of {n} numbers")
        try:
            m = cls(lr=float(d["lr"]), l2=float(d["l2"]), threshold=float(d["threshold"]),
                    version=int(d["version"]), n=int(d["n"]), features=names,
                    weights=[float(w) for w in d["weights"]], bias=float(d["bias"]),
                    mean=[float(m) for m in d["mean"]], m2=[float(m) for m in d["m2"]])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"model field missing or not a number: {type(e).__name__}: {e}") from None
        if not all(math.isfinite(v) for v in (m.bias, m.threshold, *m.weights, *m.mean, *m.m2)) \
                or m.n < 0 or any(v < 0 for v in m.m2):
            raise ValueError("model has a non-finite number, a negative count or variance")
        return m


def split(outcomes: list[dict], held_back: float = 0.3) -> tuple[list[dict], list[dict]]:
    """(train, test): the latest `held_back` share is the test (the order given is time)."""
    k = int(len(outcomes) * (1 - held_back))
    return outcomes[:k], outcomes[k:]


@dataclass(frozen=True)
class Score:
    """What a rule sent of some outcomes: `sent` counts them; `landed` and `profit` are sums
    weighted by each outcome's `weight` (1, or 1/explore for one a model refused and let
    through), and so are precision and profit per transaction: the estimate for every
    approved decision, not only for those the model in use let through."""
    sent: int
    landed: float
    profit: float
    weight: float = 0.0            # the sum of the weights sent (== sent when all are 1)

    @property
    def precision(self) -> float:
        return self.landed / self.weight if self.weight else 0.0

    @property
    def profit_per_tx(self) -> float:
        return self.profit / self.weight if self.weight else 0.0


def score(outcomes: list[dict], send) -> Score:
    chosen = [o for o in outcomes if send(o["features"])]
    w = [float(o.get("weight", 1.0)) for o in chosen]
    return Score(len(chosen), sum(wi for wi, o in zip(w, chosen) if o["landed"]),
                 sum(wi * int(o["profit"]) for wi, o in zip(w, chosen)), sum(w))


def evaluate(model: Model, test: list[dict]) -> dict:
    """The model beside the fixed rule (send all) on held-back outcomes."""
    fixed, learned = score(test, lambda x: True), score(test, model.send)
    return {"held_back": len(test),
            "explored": sum(1 for o in test if float(o.get("weight", 1.0)) != 1.0),
            "fixed": {"sent": fixed.sent, "precision": round(fixed.precision, 4),
                      "profit_per_tx": fixed.profit_per_tx},
            "model": {"sent": learned.sent, "precision": round(learned.precision, 4),
                      "profit_per_tx": learned.profit_per_tx, "version": model.version},
            "beats_fixed": learned.sent > 0 and learned.precision > fixed.precision
                           and learned.profit_per_tx > fixed.profit_per_tx}
