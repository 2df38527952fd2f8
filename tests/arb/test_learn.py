"""The outcome model (engine/arb/learn.py): it learns which sends land, beats the fixed rule on
held-back outcomes when the features carry the answer, and survives its LMDB form."""
from __future__ import annotations

import random

import orjson
import pytest

from engine.arb.learn import (DEFAULT_FEATURES, FEATURES, History, Model, evaluate, features,
                               score, split, with_history)


def outcomes(n: int, seed: int = 1) -> list[dict]:
    """Contested routes (a rival takes them first) mostly revert and cost gas; thin margins
    land less often; the rest land with their margin."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        contested = 1.0 if rng.random() < 0.4 else 0.0
        margin = rng.uniform(5, 80)
        chain = rng.choice(["arbitrum", "base", "polygon"])
        p_land = 0.1 if contested else min(0.95, 0.3 + margin / 100)
        landed = rng.random() < p_land
        rec = {"margin_bps": margin, "contested": contested, "hops": rng.choice([2, 3]),
               "log_depth": rng.uniform(18, 24), "state_age_s": rng.uniform(0, 0.5),
               "gas_share": rng.uniform(0.01, 0.3), "chain": chain}
        out.append({"features": features(rec), "landed": landed,
                    "profit": int(margin * 1e12) if landed else -int(2e13)})
    return out


def test_the_model_beats_the_fixed_rule_on_held_back_outcomes():
    train, test = split(outcomes(3000))
    assert len(test) == 900 and train[-1] is not test[0]
    m = Model(features=FEATURES).fit(train)
    r = evaluate(m, test)
    assert r["beats_fixed"], r
    assert r["model"]["precision"] > r["fixed"]["precision"] + 0.1
    assert r["model"]["profit_per_tx"] > r["fixed"]["profit_per_tx"]
    # it learned the right signs: contested is bad, margin good
    w = dict(zip(m.features, m.weights))
    assert w["contested"] < 0 < w["margin_bps"]


def test_untrained_model_defers_to_the_fixed_rule_and_noise_does_not_win():
    m = Model()
    assert m.send(features({"contested": 1})) and m.n == 0
    rng = random.Random(3)
    noise = [{"features": features({"margin_bps": rng.uniform(0, 100), "chain": "base"}),
              "landed": rng.random() < 0.5, "profit": 1} for _ in range(1000)]
    train, test = split(noise)
    r = evaluate(Model().fit(train), test)
    assert abs(r["model"]["precision"] - r["fixed"]["precision"]) < 0.1   # nothing to learn


def test_the_lmdb_form_round_trips_and_is_checked():
    m = Model().fit(outcomes(300))
    back = Model.from_dict(orjson.loads(orjson.dumps(m.to_dict())))
    x = features({"margin_bps": 40, "contested": 1, "chain": "polygon"})
    assert back.p(x) == pytest.approx(m.p(x)) and back.version == m.version == 1
    bad = m.to_dict() | {"weights": [0.0]}
    with pytest.raises(ValueError, match="weights"):
        Model.from_dict(bad)
    with pytest.raises(ValueError, match="features"):
        Model.from_dict(m.to_dict() | {"features": ["x"]})
    with pytest.raises(ValueError, match="none twice"):
        Model.from_dict(m.to_dict() | {"features": ["contested"] * 3})
    assert Model().features == DEFAULT_FEATURES and len(Model().weights) == 3


def rival_outcomes(n: int, seed: int = 2) -> list[dict]:
    """Routes of 2-3 of 12 pools; a rival takes the big swaps of 4 of them first (our trades
    through those land 15 % of the time, the others 90 %); mev-watch sees only half of that."""
    rng = random.Random(seed)
    pools = [f"0x{i:040x}" for i in range(12)]
    rival = set(pools[:4])
    out = []
    for _ in range(n):
        route = rng.sample(pools, rng.choice([2, 3]))
        hit = bool(rival & set(route))
        landed = rng.random() < (0.15 if hit else 0.9)
        seen = 0.6 if hit and rng.random() < 0.5 else 0.0
        rec = {"margin_bps": rng.uniform(5, 80), "contested": seen, "chain": "arbitrum"}
        out.append({"features": features(rec), "landed": landed, "pools": route,
                    "profit": int(1e15) if landed else -int(2e13)})
    return out


def test_the_route_history_is_from_earlier_outcomes_only_and_finds_the_rivals_pools():
    outs = rival_outcomes(400)
    xs, h = with_history(outs)
    assert xs[0]["features"]["route_failed"] == History.BASE        # nothing known yet
    # each one from those before it: replaying the first k gives the k-th's figure
    for k in (1, 50, 399):
        _, before = with_history(outs[:k])
        assert xs[k]["features"]["route_failed"] == before.failed(outs[k]["pools"])
    # a pool's share counts every route through it (a rival's pool beside it fails them too),
    # but the rival's pools fail most
    assert min(h.rate(f"0x{i:040x}") for i in range(4)) > 0.75 > \
        max(h.rate(f"0x{i:040x}") for i in range(4, 12))
    frozen, h2 = with_history(outs[:10], History.from_dict(h.to_dict()), learn=False)
    assert h2.counts == h.counts                                    # held back: not added
    train, test = split(outs)
    train, hist = with_history(train)
    test, _ = with_history(test, hist, learn=False)
    r = evaluate(Model().fit(train), test)
    assert r["beats_fixed"] and r["model"]["precision"] > r["fixed"]["precision"] + 0.2, r
    for bad in ({"pools": {"0xa": [1, 2]}}, {"pools": {"0xa": [1]}}, {"pools": []}, "x"):
        with pytest.raises(ValueError, match="history"):
            History.from_dict(bad)


def test_score_counts_what_was_sent():
    outs = outcomes(50)
    s = score(outs, lambda x: x["contested"] == 0.0)
    assert s.sent == sum(1 for o in outs if o["features"]["contested"] == 0.0)
    assert s.landed <= s.sent and (s.precision == 0.0 or 0 < s.precision <= 1)


def test_explored_outcomes_weigh_one_over_the_share_in_the_scores():
    """The fixed rule judged on outcomes a model in use filtered: its refusals are missing but
    for the explored share, each of which stands for 1/explore of them."""
    kept = [{"features": features({"contested": 0.0}), "landed": True, "profit": 10}] * 6
    explored = [{"features": features({"contested": 1.0}), "landed": False, "profit": -2,
                 "weight": 4.0}] * 2
    s = score(kept + explored, lambda x: True)
    assert s.sent == 8 and s.weight == 14.0 and s.landed == 6.0
    assert s.precision == 6 / 14 and s.profit_per_tx == (60 - 16) / 14
    only = score(kept + explored, lambda x: x["contested"] == 0.0)
    assert only.precision == 1.0 and only.profit_per_tx == 10.0
    m = Model()
    assert evaluate(m, kept + explored)["explored"] == 2
    from engine.arb.learn import sample
    opp = {"features": {"contested": 1.0}, "gas_cost_token": "2",
           "model": {"version": 3, "p": 0.2, "explore_weight": 4.0}}
    assert sample(opp, {"state": "reverted", "t": 5.0})["weight"] == 4.0
    assert sample({**opp, "model": {"explore_weight": "x"}}, {"state": "reverted"})["weight"] == 1.0
