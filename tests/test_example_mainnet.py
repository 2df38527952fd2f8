"""engine.example-mainnet.toml: it validates with its endpoint variables set (loopback URLs: no
network needed), a variable left unset is exit 2 naming it, the key and the line, and every
address in it is one that ../shared/data/pools/POOL_PARAMS.md gives with its source."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine import config
from engine.core.role import describe_kind

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "engine.example-mainnet.toml"
VARS = {f"{c.upper()}_{k}_URL": f"{s}://127.0.0.1:{9000 + i}/{c}"
        for i, c in enumerate(config.CHAINS) for k, s in (("RPC", "http"), ("WS", "ws"))}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    return {**env, **VARS, "MORALIS_STREAMS_SECRET": "s", **extra}


def test_it_validates_with_the_variables_set(monkeypatch):
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    cfg = config.load(EXAMPLE, describe=describe_kind)
    assert cfg.engine["mode"] == "paper" and cfg.metrics["listen"] == "127.0.0.1:9464"
    assert cfg.moralis["secret_env"] == "MORALIS_STREAMS_SECRET"
    for c, net in cfg.networks.items():
        assert net["rpc"] == [VARS[f"{c.upper()}_RPC_URL"]]
        assert net["ws"] == [VARS[f"{c.upper()}_WS_URL"]]
        assert net["pools"] and net["factories"] and net["chain_id"] == config.CHAINS[c]
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--check", "-c", str(EXAMPLE)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and ": ok (" in r.stdout, r.stderr


@pytest.mark.parametrize("unset", ["BASE_WS_URL", "ARBITRUM_RPC_URL"])
def test_an_unset_variable_is_exit_2_naming_it(unset):
    env = _env()
    del env[unset]
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--check", "-c", str(EXAMPLE)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    chain, kind = unset.split("_")[0].lower(), unset.split("_")[1].lower()
    text = EXAMPLE.read_text().splitlines()
    line = next(i + 1 for i, ln in enumerate(text) if ln.startswith(f"{kind} = [\"${{{unset}}}\"]"))
    assert f"engine.example-mainnet.toml:{line}: chains.{chain}.{kind}: environment variable " \
           f"{unset} is not set" in r.stderr, r.stderr


def test_an_empty_variable_and_a_literal_url_beside_one():
    raw = {"chains": {"base": {"rpc": ["${X_EMPTY}", "http://127.0.0.1:1"]}},
           "roles": {"a": {"kind": "roles.agents:Agent", "chains": ["base"]}}}
    os.environ.pop("X_EMPTY", None)
    with pytest.raises(config.ConfigError, match="X_EMPTY is not set"):
        config.from_dict(raw)
    raw["chains"]["base"]["rpc"] = ["https://${X_HOST}/v2/${X_KEY}", "http://127.0.0.1:1"]
    os.environ.update(X_HOST="rpc.example", X_KEY="k")
    try:
        assert config.from_dict(raw).networks["base"]["rpc"] == ["https://rpc.example/v2/k",
                                                                  "http://127.0.0.1:1"]
    finally:
        del os.environ["X_HOST"], os.environ["X_KEY"]


def test_every_address_has_its_source(shared_data):
    params = (shared_data / "pools" / "POOL_PARAMS.md").read_text().lower()
    found = re.findall(r'"(0x[0-9a-fA-F]{40})"', EXAMPLE.read_text())
    assert len(found) == 19
    for a in found:
        assert a.lower() in params, a
