"""`syndicate bench switch --repeat N`: each run's p50/p99/p99.9 beside its baseline, the worst
of every column over the runs, and whether issue 9's goals held in every run."""
from __future__ import annotations

from engine.bench.report import Summary
from engine.bench.switch import main, repeat_table


def _s(p50, p99, p999):
    return Summary("x", 100, p50, p99, p999, p999, p50)


def test_worst_is_taken_over_runs_and_goals_judged_on_it():
    runs = [{"load": 1.0, "heads": {"agent": (_s(100, 200, 900), _s(5000, 9000, 9900)),
                                    "executor": (_s(90, 240, 700), None),
                                    "two switches": (_s(300, 500, 800), _s(1, 2, 3))}},
            {"load": 2.5, "heads": {"agent": (_s(110, 260, 800), _s(4000, 8000, 12000)),
                                    "executor": (_s(95, 230, 1200), None),
                                    "two switches": (_s(310, 590, 900), _s(1, 2, 3))}}]
    out = repeat_table(runs)
    rows = {ln.split()[1]: ln.split()[2:] for ln in out.splitlines() if ln.startswith("worst")}
    assert rows["agent"] == ["110", "260", "900", "5000", "9000", "12000"]
    assert rows["executor"] == ["95", "240", "1200"]          # no baseline: nothing beside it
    assert " 2.50  agent" in out                                 # each run's load is shown
    assert "agent p99 ≤ 250: NOT met (worst 260)" in out
    assert "agent p99.9 ≤ 1000: met" in out
    assert "executor p99.9 ≤ 1000: NOT met (worst 1200)" in out
    assert "two switches p99 ≤ 600: met (worst 590)" in out


def test_bad_arguments_exit_2(capsys):
    assert main(["--repeat", "0"]) == 2
    assert main(["--events", "10"]) == 2
    assert main(["--repeat", "x"]) == 2
    assert "--repeat" in capsys.readouterr().err
