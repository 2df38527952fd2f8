"""Typos do not pass (issue 9, 3.3): each role kind declares its options and its tasks
(RoleKind.OPTIONS / TASKS, each task's OPTIONS), and `syndicate run` (and `--check`) refuses
anything else with the key and its line, exit 2, nothing started."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import config
from engine.core.role import RoleKind, describe_kind

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '[roles.m]\nkind = "roles.monitor:SyntheticSource"\nchains = ["arbitrum"]\n'
AGENT = '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n'


def check(tmp_path, text: str) -> subprocess.CompletedProcess:
    p = tmp_path / "engine.toml"
    p.write_text(text)
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(p), "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("text,needle", [
    # the two typos a new user made
    (AGENT + SOURCE + "options = { rat = 1.0 }\n",
     "engine.toml:7: roles.m.options.rat: unknown key (known: burst, count, impact_bps, rate)"),
    (SOURCE + AGENT + "[roles.a.tasks.chekcsum]\ninterval = 1.0\n",
     "engine.toml:7: roles.a.tasks.chekcsum: unknown task (known: checksum, gas-sampler, load-model, record-opportunities, search-index)"),
    # a wrong type for a declared option, a task's own options, a subclass's, a fault kind's
    (SOURCE + 'options = { rate = "fast" }\n', "engine.toml:4: roles.m.options.rate: must be"),
    (AGENT + "[roles.a.tasks.checksum]\noptions = { links_per_rnu = 5 }\n",
     "engine.toml:5: roles.a.tasks.checksum.options.links_per_rnu: unknown key"),
    (AGENT + "[roles.a.tasks.gas-sampler]\noptions = { timeout = true }\n",
     "roles.a.tasks.gas-sampler.options.timeout: must be"),
    ('[roles.x]\nkind = "roles.agents:Executor"\noptions = { dedup = 5 }\n',
     "roles.x.options.dedup: unknown key (known: contest_weight, crash_at, crash_flag, deadline_s, dedup_window, explore, "
     "fork_hold_s, fresh_heads, gas_gwei, hold_switch, impact_threshold_bps, key_env, keystore, log_per_s, max_age_s, max_block_lag, "
     "max_exact, max_hops, min_profit, password_env, priority_gwei, receipt_poll, receipt_timeout, "
     "replace_after_blocks, request_timeout, rpc, sending_thread, stale_factor)"),
    ('[roles.f]\nkind = "roles.faults:FaultAgent"\noptions = { stall_after = 1 }\n',
     "roles.f.options.stall_after: unknown key"),
    ('[roles.f]\nkind = "roles.faults:FaultAgent"\n[roles.f.tasks.leek]\n', "unknown task"),
    # a source declares it is one: it needs chains (with the line now)
    ('[roles.m]\nkind = "roles.monitor:SyntheticSource"\n',
     "engine.toml:1: roles.m.chains: a source role needs the chains it watches"),
])
def test_undeclared_options_and_tasks_are_refused(tmp_path, text, needle):
    r = check(tmp_path, text)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_declared_options_and_tasks_pass(tmp_path):
    r = check(tmp_path, AGENT + 'options = { rpc = "http://127.0.0.1:1", impact_threshold_bps = 40 }\n'
              "[roles.a.tasks.checksum]\noptions = { links_per_run = 500 }\n"
              "[roles.a.tasks.gas-sampler]\ninterval = 5\noptions = { alert_pct = 10 }\n"
              + SOURCE + "options = { rate = 3, burst = 2, count = 10 }\n"
              '[roles.f]\nkind = "roles.faults:FaultAgent"\n'
              'options = { discover = true, stall_after_s = 1.5, stall_flag = "x" }\n'
              '[roles.p]\nkind = "roles.probe:ChecksumProbe"\n')
    assert r.returncode == 0, r.stderr


def test_the_line_is_the_offending_roles_not_the_first_inline_table(tmp_path):
    r = check(tmp_path, SOURCE + "options = { rate = 1.0 }\n\n" + SOURCE.replace("[roles.m]", "[roles.n]")
              + "options = { rat = 1.0 }\n")
    assert r.returncode == 2 and "engine.toml:9: roles.n.options.rat" in r.stderr, r.stderr


def test_a_kind_runs_with_its_declared_defaults():
    from types import SimpleNamespace
    from roles.monitor import SyntheticSource
    rt = SimpleNamespace(name="m", config=SimpleNamespace(options={"burst": 3}), log=None)
    src = SyntheticSource(rt)
    assert src.options == {"rate": 2.0, "burst": 3, "count": None, "impact_bps": 75.0}
    assert describe_kind("roles.monitor:SyntheticSource").source is True
    assert describe_kind("roles.agents:Agent").source is False


def test_every_kind_in_roles_declares_what_it_reads():
    """Every `self.options[...]` / `options.get(...)` name a kind or task reads is declared."""
    import ast
    import importlib
    import re
    from engine.core.tasks import Task
    declared = set()
    for f in sorted((ROOT / "roles").glob("*.py")):
        mod = importlib.import_module(f"roles.{f.stem}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, (RoleKind, Task)):
                declared |= set(obj.OPTIONS)
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and \
                    re.search(r"\bo(ptions)?$", ast.unparse(node.value)):
                assert node.slice.value in declared, f"{f.name}: {ast.unparse(node)} undeclared"
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                    ("options.get", "o.get")) and isinstance(node.args[0], ast.Constant):
                assert node.args[0].value in declared, f"{f.name}: {ast.unparse(node)} undeclared"


def test_config_stays_pure_it_takes_a_description_not_the_kind(tmp_path):
    p = tmp_path / "engine.toml"
    p.write_text(SOURCE + "options = { rat = 1.0 }\n")
    config.load(p)                                   # without a description: not checked
    with pytest.raises(config.ConfigError, match="roles.m.options.rat: unknown key"):
        config.load(p, describe=lambda kind: config.KindSpec(
            options={"rate": (float, 2.0, "events per second")}, tasks={}, source=True))
