"""engine.toml [moralis]: defaults, the receiver role it adds, and exit 2 for what is wrong."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import config

ROOT = Path(__file__).resolve().parents[2]
ROLE = '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n'


def run(tmp_path, text: str, env: dict) -> subprocess.CompletedProcess:
    p = tmp_path / "engine.toml"
    p.write_text(text)
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", "-c", str(p)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in {**os.environ, **env}.items() if v is not None})


def test_section_present_adds_the_receiver_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", "x")
    p = tmp_path / "engine.toml"
    p.write_text(ROLE + "[moralis]\n")
    cfg = config.load(p)
    assert cfg.moralis["listen"] == ["127.0.0.1:8787"] and cfg.moralis["path"] == "/webhooks/moralis"
    assert cfg.moralis["max_body"] == 4 << 20 and cfg.moralis["api_key_env"] == "MORALIS_API_KEY"
    r = cfg.roles[config.MORALIS_ROLE]
    assert r.kind == "roles.webhook:MoralisReceiver" and not r.subscribe and r.chains == ()


def test_absent_section_means_no_receiver(tmp_path):
    p = tmp_path / "engine.toml"
    p.write_text(ROLE)
    cfg = config.load(p)
    assert cfg.moralis is None and config.MORALIS_ROLE not in cfg.roles


def test_missing_secret_is_exit_2_naming_the_variable(tmp_path):
    r = run(tmp_path, ROLE + '\n[moralis]\nsecret_env = "MY_STREAMS_SECRET"\n',
            {"MY_STREAMS_SECRET": None})
    assert r.returncode == 2
    assert "moralis.secret_env" in r.stderr and "MY_STREAMS_SECRET is not set" in r.stderr
    assert "engine.toml:6" in r.stderr     # the secret_env line


def test_missing_default_secret_names_it_and_the_section_line(tmp_path):
    r = run(tmp_path, ROLE + "[moralis]\n", {"MORALIS_STREAMS_SECRET": None})
    assert r.returncode == 2 and "MORALIS_STREAMS_SECRET is not set" in r.stderr
    assert "engine.toml:4" in r.stderr


@pytest.mark.parametrize("line,needle", [
    ('listen = ["127.0.0.1"]', "moralis.listen: each listener must be \"host:port\""),
    ('listen = []', "moralis.listen: must name at least one listener"),
    ('listen = ["h:99999"]', "port in 1..65535"),
    ('path = "hooks"', "moralis.path: must start with /"),
    ('secret_env = "hunter2 is my secret"', "moralis.secret_env: must be the NAME"),
    ('max_body = "lots"', "moralis.max_body: not a size"),
    ('webhook_url = "ftp://x"', "moralis.webhook_url: must be an http(s) URL"),
    ('keep = 0', "moralis.keep: must be > 0"),
    ('keep = "1d"', "moralis.keep"),
    ('colour = "red"', "moralis.colour: unknown key"),
])
def test_bad_values_are_exit_2_with_key_and_line(tmp_path, line, needle):
    r = run(tmp_path, ROLE + "[moralis]\n" + line + "\n", {"MORALIS_STREAMS_SECRET": "x"})
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "engine.toml:5" in r.stderr, r.stderr


def test_sync_tools_may_load_without_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("MORALIS_STREAMS_SECRET", raising=False)
    p = tmp_path / "engine.toml"
    p.write_text(ROLE + "[moralis]\n")
    with pytest.raises(config.ConfigError):
        config.load(p)
    assert config.load(p, check_env=False).moralis is not None
