"""`syndicate bench switch --research` (issue 13): the switch measured while the agents are the
guide's kinds running their research plan against a devnet; the research did run meanwhile."""
from __future__ import annotations

from engine.bench.switch import AGENTS, RESEARCH, run_ours, _research_runs

RPC_TASKS = {"gas-trend", "sequencer-timing", "mev-watch", "fee-structure", "op-stack-metrics",
             "gas-volatility", "block-times"}


def test_the_research_kinds_run_their_plan_while_the_switch_is_measured(devnet, tmp_path):
    manifest = str(devnet.write_manifest(tmp_path / "manifest.json"))
    r = run_ours(300, 100.0, lambda done, want: None, manifest=manifest)
    assert len(r["samples"]["agent"]) + r["warmup_excluded"]["agent"] == 300
    research = _research_runs(r["status"]["roles"])   # only the research kinds report these
    for chain, (_, names) in RESEARCH.items():
        tasks = research[AGENTS[chain]]
        assert set(tasks) == set(names), tasks
        for n in set(names) & RPC_TASKS:          # the RPC tasks did their work on the devnet
            assert tasks[n]["runs"] >= 1 and not tasks[n]["errors"], (n, tasks[n])
