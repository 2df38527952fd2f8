"""`syndicate bench detect` on a few hundred devnet swaps: every swap is counted on both sides,
both figures and the ratio are printed, --json parses, --repeat and --stages report.  Never
speed: the figures are whatever this loaded machine gives."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.bench.detect import main
from engine.chain.contracts import toolchain_missing

ROOT = Path(__file__).resolve().parents[2]


def bench(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "bench", "detect", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def _toolchain():
    why = toolchain_missing()
    if why:
        pytest.skip(why)


def test_json_counts_every_swap_on_both_sides_over_two_runs_and_the_stages():
    r = bench("--swaps", "250", "--rate", "80", "--repeat", "2", "--stages", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["bench"] == "detect" and len(doc["runs"]) == 2
    for run in doc["runs"]:
        assert run["swaps"] == 250 and run["reverted"] == 0
        # one record per swap, none missing, none doubled, nothing lost in the ring
        assert run["records"] == run["swaps_with_one_record"] == 250
        assert run["swaps_without_record"] == run["swaps_with_several"] == run["ring_lost"] == 0
        assert run["ours"]["n"] == 250 and run["ours"]["p50"] > 0
        # the baseline decoded the same logs (and the V2 Swap logs besides)
        assert run["baseline_matched"] == 250 and run["baseline_events"] > 250
        assert run["baseline"]["n"] == 250
        assert run["monitor"]["bad"] == 0 and run["monitor"]["errors"] == 0
    res = doc["results"][0]
    assert res["ours"]["n"] == res["baseline"]["n"] == 250
    assert res["ratio_p50"] > 0 and res["ratio_p99"] > 0
    assert isinstance(doc["goal_met"], bool) and doc["goal_p99_us"] == 1000.0
    st = doc["stages_us"]
    assert st["records"] == 250
    assert st["stages"]["recv → t_written (the figure)"]["n"] == 250
    assert st["counts"]["records"] == 250 and st["counts"]["bad"] == 0


def test_text_shows_both_figures_the_ratio_and_the_load():
    r = bench("--swaps", "120", "--rate", "80")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "syndicate monitor (run 1 of 1)" in out and "web3 AsyncWeb3 + process_log" in out
    assert "ratio (baseline/ours" in out and "load" in out
    assert "goal p99 <= 1000 us:" in out
    assert "120 swaps (0 reverted)" in out and "120 records (0 swaps without, 0 with several)" in out


def test_bad_arguments_exit_2(capsys):
    assert main(["--swaps", "0"]) == 2
    assert main(["--rate", "-1"]) == 2
    assert main(["--repeat", "0"]) == 2
    assert main(["--chain", "mars"]) == 2
    assert main(["--swaps", "many"]) == 2
    err = capsys.readouterr().err
    assert "--swaps" in err and "mars" in err
