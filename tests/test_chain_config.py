"""[chains.<name>] tables: checked like every other key, filled in from the devnet manifest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import config

ROOT = Path(__file__).resolve().parent.parent
ROLE = '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n'
POOL = "0x" + "ab" * 20


def load(tmp_path, text: str) -> config.EngineConfig:
    p = tmp_path / "engine.toml"
    p.write_text(text)
    return config.load(p)


@pytest.mark.parametrize("text,needle", [
    ('[chains.arbitrum]\nws = ["http://x"]\n', "chains.arbitrum.ws: must be a list of ws/wss URLs"),
    ('[chains.base]\nrpc = ["ws://x"]\n', "chains.base.rpc: must be a list of http/https URLs"),
    ('[chains.base]\npools = ["0x12"]\n', "chains.base.pools: must be a list of 0x-prefixed"),
    ('[chains.polygon]\nthreshold_bps = -1\n', "chains.polygon.threshold_bps: must be >= 0"),
    ('[chains.polygon]\nreorg_depth = 0\n', "chains.polygon.reorg_depth: must be > 0"),
    ('[chains.polygon]\nlag = 3\n', "chains.polygon.lag: unknown key"),
    ('[chains]\nsolana = 1\n', "chains.solana: unknown key"),
])
def test_bad_chain_table_names_key_and_line(tmp_path, text, needle):
    with pytest.raises(config.ConfigError) as e:
        load(tmp_path, text + ROLE)
    assert needle in str(e.value)
    assert "engine.toml:2:" in str(e.value)     # every bad key above is on line 2


def test_bad_chain_table_exits_2_with_line(tmp_path):
    p = tmp_path / "engine.toml"
    p.write_text('[chains.base]\nthreshold_bps = "half"\n' + ROLE)
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(p)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "engine.toml:2: chains.base.threshold_bps: must be int" in r.stderr, r.stderr


def test_defaults_without_manifest(tmp_path):
    cfg = load(tmp_path, ROLE)
    n = cfg.networks["arbitrum"]
    assert n["ws"] == [] and n["rpc"] == [] and n["pools"] == []
    assert n["threshold_bps"] == 50 and n["reorg_depth"] == 64 and n["chain_id"] == 42161


def test_manifest_fills_what_the_table_leaves_empty(tmp_path):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"chains": {
        "arbitrum": {"chain_id": 42161, "rpc_url": "http://127.0.0.1:9", "ws_url": "ws://127.0.0.1:9",
                     "pools": [{"address": POOL.upper().replace("0X", "0x")}],
                     "dexes": [{"factory": "0x" + "cd" * 20}]},
        "base": {"chain_id": 8453, "rpc_url": "http://127.0.0.1:8", "ws_url": "ws://127.0.0.1:8",
                 "pools": [{"address": POOL}]}}}))
    cfg = load(tmp_path, f'[chains]\nmanifest = "{m.name}"\n'
                         '[chains.base]\nws = ["ws://127.0.0.1:7", "ws://127.0.0.1:6"]\n'
                         'threshold_bps = 25\n' + ROLE)
    a, b, p = cfg.networks["arbitrum"], cfg.networks["base"], cfg.networks["polygon"]
    assert a["ws"] == ["ws://127.0.0.1:9"] and a["rpc"] == ["http://127.0.0.1:9"]
    assert a["pools"] == [POOL] and a["factories"] == ["0x" + "cd" * 20]
    assert b["ws"] == ["ws://127.0.0.1:7", "ws://127.0.0.1:6"] and b["threshold_bps"] == 25
    assert b["rpc"] == ["http://127.0.0.1:8"]
    assert p["ws"] == [] and p["pools"] == []


@pytest.mark.parametrize("text,needle", [
    ('[chains.polygon.submit]\nendpoints = [{ kind = "public", url = "http://a" }, '
     '{ kind = "private", url = "https://b" }]\n',
     "chains.polygon.submit.endpoints: a public endpoint may only follow the private ones"),
    ('[chains.base.submit]\nendpoints = [{ kind = "timeboost", url = "http://a", auction = "'
     + POOL + '" }]\n', "chains.base.submit.endpoints: timeboost is Arbitrum's express lane"),
    ('[chains.arbitrum.submit]\nendpoints = [{ kind = "timeboost", url = "http://a" }]\n',
     "timeboost needs the auction contract"),
    ('[chains.arbitrum.submit]\nendpoints = [{ kind = "carrier-pigeon", url = "http://a" }]\n',
     "kind: must be one of"),
    ('[chains.arbitrum.submit]\nendpoints = [{ kind = "sequencer", url = "http://a", key = "x" }]\n',
     "chains.arbitrum.submit.endpoints[0].key: unknown key"),
    ('[chains.polygon.submit]\nendpoints = [{ kind = "private", url = "https://b", '
     'auth_env = "abc def" }]\n', "must be the NAME of an environment variable"),
    ('[chains.arbitrum]\nexecutor = "0x12"\n', "chains.arbitrum.executor: must be a 0x-prefixed"),
    ('[chains.arbitrum]\nblock_time = 0\n', "chains.arbitrum.block_time: must be > 0"),
])
def test_bad_submission_policy_is_refused(tmp_path, text, needle):
    with pytest.raises(config.ConfigError) as e:
        load(tmp_path, text + ROLE)
    assert needle in str(e.value), str(e.value)
    assert "engine.toml:" in str(e.value)


def test_submission_policy_and_block_times(tmp_path):
    cfg = load(tmp_path, '[chains.polygon.submit]\nendpoints = [{ kind = "private", url = '
                         '"https://api.blxrbdn.com", auth_env = "BLXR" }, { kind = "public", '
                         'url = "http://127.0.0.1:8547" }]\n' + ROLE)
    eps = cfg.networks["polygon"]["submit"]["endpoints"]
    assert [e["kind"] for e in eps] == ["private", "public"] and eps[0]["timeout"] == 2.0
    assert {c: n["block_time"] for c, n in cfg.networks.items()} == \
        {"arbitrum": 0.25, "base": 2.0, "polygon": 2.0}
