"""The operator's commands tell the truth and behave in a pipeline (issue 9, 3.4): output cut
short by its reader (`| head`) is no error and prints no traceback; `status` of an engine whose
supervisor is dead exits 1; `status --tasks` of a stopped engine does not say "running";
`snapshot info` reports the store file's map size, not the reader's own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import render
from engine.core.control import ControlBlock
from engine.core.store import Store

ROOT = Path(__file__).resolve().parent.parent
ROLE = "base-analyst"


def cli(*args, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


@pytest.fixture
def stopped_engine(tmp_path, unique_name):
    """engine.toml and a store whose last checkpoint was taken mid-run; no engine runs."""
    state = tmp_path / "state"
    p = tmp_path / "engine.toml"
    p.write_text(render({"engine": {"name": unique_name, "state_dir": str(state)},
                         "store": {"map_size": "1GiB"},
                         "roles": {ROLE: {"kind": "roles.agents:Agent", "chains": ["base"]}}}))
    (state / "lmdb").mkdir(parents=True)
    with Store.open(state / "lmdb" / unique_name, map_size=1 << 30) as s:
        s.save_checkpoint(ROLE, {"checksum": {"state": {"n": 5}, "in_run": True, "runs": 3,
                                              "completed": 2, "errors": 0, "interval": 0.0,
                                              "priority": "LOW", "missed_intervals": 0,
                                              "busy_ms": 1.0, "completion_rate": 2 / 3,
                                              "mean_run_ms": 0.5, "last_error": ""}})
    return p, state / "lmdb" / unique_name


@pytest.fixture
def dead_engine(unique_name):
    """The control block a supervisor killed with SIGKILL leaves behind."""
    child = subprocess.Popen(["true"])
    child.wait()                                  # a pid that no longer runs
    cb = ControlBlock.create(unique_name, 2, child.pid)
    try:
        yield unique_name
    finally:
        cb.close()
        ControlBlock.unlink(unique_name)


def test_output_cut_short_by_its_reader_is_not_an_error(stopped_engine):
    cfg, store = stopped_engine
    for args in (["help"], ["status", "--help"], ["ctl", "--help"], ["snapshot", store, "info"],
                 ["status", "-c", cfg, "--tasks"], ["run", "-c", cfg, "--check"]):
        r, w = os.pipe()
        os.close(r)                               # `| head -0`: the reader is gone
        try:
            done = cli(*args, stdout=w)
        finally:
            os.close(w)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)   # no traceback, no "Exception ignored"


def test_status_of_a_dead_engine_exits_1(dead_engine):
    r = cli("status", "--name", dead_engine)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NOT RUNNING" in r.stdout
    r = cli("status", "--name", dead_engine, "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["running"] is False


def test_status_tasks_of_a_stopped_engine_does_not_say_running(stopped_engine):
    cfg, _ = stopped_engine
    r = cli("status", "-c", cfg, "--tasks")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if "checksum" in line)
    assert " running" not in row, r.stdout
    assert "not running" in r.stdout.splitlines()[0], r.stdout
    doc = json.loads(cli("status", "-c", cfg, "--tasks", "--json").stdout)
    assert doc[ROLE]["running"] is False and doc[ROLE]["tasks"]["checksum"]["in_run"] is True


def test_snapshot_info_says_which_map_size_it_reports(stopped_engine):
    _, store = stopped_engine
    r = cli("snapshot", store, "info")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("file"))
    assert "map 1.0 GiB" in line and "4.0 GiB" not in line, line
    doc = json.loads(cli("snapshot", store, "info", "--json").stdout)
    assert doc["map_bytes"] == 1 << 30


def test_the_guide_line_puts_each_metric_beside_its_goal():
    from engine.control_cli import guide_line
    from engine.core.status import GUIDE, guide
    rows = [{"name": "a", "switches": 1000, "late_saves": 0, "switches_broken": 0,
             "checkpoints": 50, "checkpoint_errors": 0, "restore_saved": 4, "restore_done": 4,
             "info": None},
            {"name": "alphago-coordinator", "switches": 0, "checkpoints": 10,
             "checkpoint_errors": 1, "restore_saved": 0, "restore_done": 0,
             "info": {"guide": {"task_completion_rate": 0.999, "avg_task_ms": 16.7,
                                "discoveries_per_hour": 186.0, "response_ms_p99": 140.0,
                                "decision_ms_p99": 12.6, "switch_success": 0.0}}}]
    g = guide(rows)
    assert g["switch_success"] == 1.0 and g["knowledge_retention"] == 1.0
    assert g["state_save_success"] == round(60 / 61, 5) and not g["met"]["state_save_success"]
    assert g["avg_task_ms"] == 16.7 and g["from"] == "alphago-coordinator"
    assert set(g["met"]) == set(GUIDE) and g["met"]["response_ms_p99"] is False
    line = guide_line(g)
    assert line.startswith("guide: switch success 100%, state saves 98.36% (MISSED: goal > "
                           "99.90%), retention 100%, tasks done 99.90%, task 16.7 ms"), line
    assert "response p99 140 ms (MISSED: goal < 100 ms)" in line
    assert "decision p99 12.6 ms" in line and "decision p99 12.6 ms (" not in line
    assert guide_line(guide([])) == ""
