"""`syndicate bench all`: each benchmark's JSON read into the guide's figures, each judged
against the guide's three tiers, a missing or failing benchmark a row saying so; and one real
run of the quickest benchmark through the command line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.bench.all import extract, render, tier
from enginehelp import ROOT


@pytest.mark.parametrize("figure,value,want", [
    ("switch", 0.9, "elite"), ("switch", 1.2, "competitive"), ("switch", 1.9, "minimum"),
    ("switch", 2.5, "below"), ("efficiency", 96.0, "elite"), ("efficiency", 85.0, "minimum"),
    ("efficiency", 50.0, "below"), ("success", 81.0, "competitive"), ("decide", None, "-"),
])
def test_a_figure_is_judged_against_the_guides_tiers(figure, value, want):
    assert tier(figure, value) == want


def test_each_benchmarks_json_becomes_its_figures():
    lat = {"ours": {"label": "ours", "p50": 300.0, "p99": 1200.0},
           "baseline": {"label": "queue", "p50": 900.0, "p99": 5000.0}}
    sw = extract("switch", {"results": [{"name": "signal sent → handling started, agent (event "
                                                 "ring)", **lat}],
                            "background_efficiency": {"a": 0.97, "b": 0.91}})
    assert sw["efficiency"]["value"] == pytest.approx(91.0) and "b" in sw["efficiency"]["note"]
    assert sw["switch"]["p99"] == 1.2 and sw["switch"]["baseline_p50"] == 0.9
    dec = extract("decide", {"results": [{"name": "two-pool search, 100 pools", **lat},
                                         {"name": "three-hop search, 100 pools", "ours": {
                                             "p50": 1.0, "p99": 9000.0}, "baseline": {}}]})
    assert dec["decide"]["value"] == 9.0
    e2e = extract("e2e", {"extra": {"ours": {"success_rate": 0.75, "sent": 4,
                                             "landed_profitable": 3},
                                    "baseline": {"success_rate": 0.5}}})["success"]
    assert e2e["value"] == 75.0 and e2e["baseline_value"] == 50.0 and "3 of 4" in e2e["note"]
    assert extract("e2e", {"extra": {"ours": {"success_rate": None}}})["success"] is None
    assert extract("e2e", {})["success"] is None
    assert extract("store", {"results": []})["save"] is None


def _all(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engine.cli", "bench", "all", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_bench_all_runs_the_benchmarks_and_says_what_it_could_not_measure():
    r = _all("--only", "store", "--json")
    assert r.returncode == 0, r.stderr
    figs = json.loads(r.stdout)["figures"]
    save = figs["save"]
    assert save["tier"] in ("elite", "competitive", "minimum", "below"), (save, r.stderr[-2000:])
    assert save["p50"] > 0 and save["baseline_p50"] > 0 and save["tiers"]["elite"] == 2.0
    text = render(figs)
    assert "state save time [ms]" in text and "<10" in text
    assert set(figs) == {"save"}            # --only: nothing else ran


def test_bench_all_bad_input_exits_2():
    r = _all("--only", "warp")
    assert r.returncode == 2 and "--only: unknown ['warp']" in r.stderr
