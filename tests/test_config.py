"""engine.toml validation: every mistake is one clear error naming the key and line (issue 2)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import config
from taskhelp import ListLog

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path, text: str) -> subprocess.CompletedProcess:
    p = tmp_path / "engine.toml"
    p.write_text(text)
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(p)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


GOOD_ROLE = '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n'


def test_shipped_engine_toml_is_valid():
    cfg = config.load(ROOT / "engine.toml")
    for role in config.DEFAULT_ROLES:
        assert role in cfg.roles
    assert cfg.engine["mode"] == "paper"


@pytest.mark.parametrize("text,needle", [
    ('[engine]\nnmae = "x"\n' + GOOD_ROLE, "engine.nmae: unknown key"),
    ('[engine]\ngrace = "soon"\n' + GOOD_ROLE, "engine.grace: must be int or float"),
    ('[engine]\ngrace = -1\n' + GOOD_ROLE, "engine.grace: must be > 0"),
    ('[rings]\nevent_slots = 1000\n' + GOOD_ROLE, "rings.event_slots: must be a power of two"),
    ('[engine]\nmode = "yolo"\n' + GOOD_ROLE, "engine.mode: must be one of 'paper', 'live'"),
    ('[engine]\nmode = "live"\n[roles.x]\nkind = "roles.executor:Executor"\n'
     'options = { key_env = "SYN_TEST_NO_SUCH_KEY" }\n', "SYN_TEST_NO_SUCH_KEY"),
    ('[roles.a]\nkind = "roles.agents:Agent"\nrestart = "always"\n', "roles.a.restart"),
    ('[roles.a]\nkind = "roles.agents:Agent"\nchains = ["solana"]\n', "unknown chain 'solana'"),
    ('[roles.a]\nkind = "roles.agents:Agent"\nmemory_hard = "lots"\n', "roles.a.memory_hard: not a size"),
    ('[roles.a]\nkind = "roles.agents:Agent"\nmemory_soft = "2GiB"\nmemory_hard = "1GiB"\n',
     "roles.a.memory_soft: must not exceed memory_hard"),
    ('[roles.a]\nkind = "roles.nothere:Agent"\n', "roles.a.kind: kind 'roles.nothere:Agent': no module"),
    ('[roles.a]\nkind = "roles.agents:Nobody"\n', "has no 'Nobody'"),
    ('[roles.a]\nchains = ["base"]\n', 'missing key "kind"'),
    ('[roles.Bad_Name]\nkind = "roles.agents:Agent"\n', "roles.Bad_Name"),
    ('[engine]\nname = "x"\n', "no [roles.NAME] tables"),
    ('[switch]\nrole_rt_priority = 30\n' + GOOD_ROLE, "must be below monitor_rt_priority"),
    ('[roles.a]\nkind = "roles.agents:Agent"\n[roles.a.tasks.checksum]\npriority = "urgent"\n',
     "roles.a.tasks.checksum.priority"),
    ('[wat]\nx = 1\n' + GOOD_ROLE, "wat: unknown section"),
    ("[engine\n", "not valid TOML"),
    ('[chains]\nmanifest = "nowhere.json"\n' + GOOD_ROLE,
     "chains.manifest: " ),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, text, needle):
    r = run(tmp_path, text)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1          # one line
    assert not (tmp_path / "var").exists()    # nothing started, nothing created


def test_error_names_the_line(tmp_path):
    r = run(tmp_path, '# comment\n[engine]\nname = "ok"\n\n[supervisor]\nmax_restarts = "5"\n'
            + GOOD_ROLE)
    assert r.returncode == 2
    assert "engine.toml:6: supervisor.max_restarts" in r.stderr


def test_missing_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c",
                        str(tmp_path / "nope.toml")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "nope.toml: no such file" in r.stderr


def test_sizes():
    assert config.parse_size("256MiB") == 256 << 20
    assert config.parse_size("1GiB") == 1 << 30
    assert config.parse_size(1024) == 1024
    with pytest.raises(ValueError):
        config.parse_size("12 parsecs")


def test_check_flag(tmp_path):
    p = tmp_path / "engine.toml"
    p.write_text(GOOD_ROLE)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(p), "--check"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "ok (1 roles)" in r.stdout


def test_manifest_is_checked(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('{"chains": {"solana": {"rpc_url": "http://x"}}}')
    r = run(tmp_path, f'[chains]\nmanifest = "{bad}"\n' + GOOD_ROLE)
    assert r.returncode == 2 and "unknown chain 'solana'" in r.stderr
    bad.write_text("not json")
    r = run(tmp_path, f'[chains]\nmanifest = "{bad}"\n' + GOOD_ROLE)
    assert r.returncode == 2 and "not a readable JSON manifest" in r.stderr
    good = tmp_path / "g.json"
    good.write_text('{"chains": {"arbitrum": {"rpc_url": "http://127.0.0.1:1"}}}')
    p = tmp_path / "ok.toml"
    p.write_text(f'[chains]\nmanifest = "{good.name}"\n' + GOOD_ROLE)
    cfg = config.load(p)
    assert cfg.manifest["chains"]["arbitrum"]["rpc_url"] == "http://127.0.0.1:1"


def _running(tmp_path, text: str, role: str = "a") -> dict:
    """The tasks role `role` would run (name -> interval), from engine.toml `text`."""
    from engine.core.kind import configure_tasks
    from roles.tasks import ChecksumTask, GasSampler
    p = tmp_path / "engine.toml"
    p.write_text(text)
    rc = config.load(p).roles[role]
    ts = configure_tasks([ChecksumTask(), GasSampler()], rc.tasks, ListLog(),
                         set(rc.optional_tasks))
    return {t.name: t.interval for t in ts}


def test_the_checksum_runs_only_where_engine_toml_asks_for_it(tmp_path):
    # the shipped file: no role burns a core on the hash chain
    shipped = config.load(ROOT / "engine.toml")
    assert not any(r.optional_tasks for r in shipped.roles.values())
    assert _running(tmp_path, GOOD_ROLE) == {"gas-sampler": 60.0}
    # engine-wide: every role that declares it, continuously
    assert _running(tmp_path, "[tasks]\nchecksum = true\n" + GOOD_ROLE) == {
        "checksum": 0.0, "gas-sampler": 60.0}
    # one role's own table turns it on for that role, with its settings
    own = GOOD_ROLE + "[roles.a.tasks.checksum]\ninterval = 1.0\n[roles.b]\n" \
        'kind = "roles.agents:Agent"\nchains = ["base"]\n'
    assert _running(tmp_path, own) == {"checksum": 1.0, "gas-sampler": 60.0}
    assert _running(tmp_path, own, "b") == {"gas-sampler": 60.0}
    # and a role may still refuse the engine-wide one
    assert _running(tmp_path, "[tasks]\nchecksum = true\n" + GOOD_ROLE +
                    "[roles.a.tasks.checksum]\nenabled = false\n") == {"gas-sampler": 60.0}
    with pytest.raises(config.ConfigError, match=r"tasks\.checksum"):
        _running(tmp_path, '[tasks]\nchecksum = "yes"\n' + GOOD_ROLE)
