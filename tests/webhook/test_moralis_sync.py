"""`syndicate moralis sync` (the real command, a subprocess) against a stand-in of the Streams
REST API (streams_standin.py), with the real receiver answering the test webhooks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.chain import streams
from engine.chain.hooks import INBOX_PREFIX
from engine.core.log import Log
from engine.core.store import Store
from moralishelp import _h
from roles.webhook import Stats, WebhookServer
from streams_standin import StreamsStandIn

ROOT = Path(__file__).resolve().parents[2]
KEY = "api-key-do-not-print-7f3c"
SECRET = "streams-secret-for-sync"
PATH = "/webhooks/moralis"


def addr(text: str) -> str:
    return "0x" + _h(text)[-40:]


def manifest(tmp_path, pools: int = 3) -> Path:
    chains = {}
    for chain, cid in (("arbitrum", 42161), ("base", 8453)):
        chains[chain] = {"chain_id": cid, "rpc_url": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1",
                         "pools": [{"address": addr(f"{chain}-pool-{i}"), "kind": "v2"} for i in range(pools)],
                         "dexes": [{"name": "uniswap_v2", "kind": "v2", "factory": addr(f"{chain}-f2")},
                                   {"name": "uniswap_v3", "kind": "v3", "factory": addr(f"{chain}-f3")}]}
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({"version": 1, "chains": chains}))
    return p


@pytest.fixture
def receiver(tmp_path, shared_data):
    store = Store.open(tmp_path / "lmdb", map_size=1 << 20)
    srv = WebhookServer(store, {"listen": ["127.0.0.1:0"], "path": PATH, "max_body": 1 << 20},
                        SECRET, Stats(), Log("test", stderr=False))
    srv.start()
    srv.url = f"http://127.0.0.1:{srv.ports[0]}{PATH}"
    yield srv
    srv.stop()
    store.close()


def write_config(tmp_path, api_url: str, webhook_url: str, pools: int = 3) -> Path:
    p = tmp_path / "engine.toml"
    p.write_text(f'[engine]\nname = "synctest"\n[chains]\nmanifest = "{manifest(tmp_path, pools)}"\n'
                 f'[moralis]\nwebhook_url = "{webhook_url}"\napi_url = "{api_url}"\n'
                 '[roles.a]\nkind = "roles.agents:Agent"\n')
    return p


def sync(cfg: Path, *extra, key: str | None = KEY) -> subprocess.CompletedProcess:
    import os
    env = {k: v for k, v in os.environ.items() if k not in ("MORALIS_API_KEY", "MORALIS_STREAMS_SECRET")}
    if key is not None:
        env["MORALIS_API_KEY"] = key
    r = subprocess.run([sys.executable, "-m", "engine.cli", "moralis", "sync", "-c", str(cfg), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert KEY not in r.stdout + r.stderr, "the API key reached the output"
    return r


def inbox_kinds(store) -> list[str]:
    with store.read() as r:
        return [rec["kind"] for _, rec in r.records("inbox", INBOX_PREFIX)]


def test_creates_one_stream_per_chain_then_is_idempotent(tmp_path, receiver):
    with StreamsStandIn(KEY, SECRET) as api:
        cfg = write_config(tmp_path, api.url, receiver.url)
        r = sync(cfg)
        assert r.returncode == 0, r.stderr
        assert sorted(s["tag"] for s in api.streams.values()) == \
            ["syndicate-synctest-arbitrum", "syndicate-synctest-base"]
        for s in api.streams.values():
            chain = s["tag"].rsplit("-", 1)[1]
            assert s["chainIds"] == [{"arbitrum": "0xa4b1", "base": "0x2105"}[chain]]
            assert s["webhookUrl"] == receiver.url and s["includeContractLogs"] is True
            assert "Sync(uint112,uint112)" in s["topic0"] and len(s["abi"]) == len(s["topic0"])
            want = {addr(f"{chain}-pool-{i}") for i in range(3)} | {addr(f"{chain}-f2"), addr(f"{chain}-f3")}
            assert {a.lower() for a in api.addresses[s["id"]]} == want
        # Moralis's test webhook on each create reached the real receiver and is in its inbox
        assert inbox_kinds(receiver.store) == ["test", "test"]
        # the second address call was rate-limited (1 per 1.5 s) and retried after Retry-After
        assert ("POST", f"/streams/evm/{next(iter(api.streams))}/address", 200) in api.calls
        assert any(st == 429 for _, _, st in api.calls) and "429 rate-limited" in r.stdout
        assert api.keys_seen == {KEY}
        before = len(api.calls)

        again = sync(cfg)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("unchanged stream") == 2 and "0 to add" in again.stdout
        assert all(m == "GET" for m, _, _ in api.calls[before:])     # nothing changed
        assert len(api.streams) == 2


def test_a_new_pool_and_a_new_url_update_the_stream(tmp_path, receiver):
    with StreamsStandIn(KEY, SECRET, address_calls=10) as api:
        assert sync(write_config(tmp_path, api.url, receiver.url)).returncode == 0
        ids = set(api.streams)
        cfg = write_config(tmp_path, api.url, receiver.url + "?v=2", pools=4)
        r = sync(cfg)
        assert r.returncode == 0, r.stderr
        assert set(api.streams) == ids                               # updated, not re-created
        assert r.stdout.count("update stream") == 2 and r.stdout.count("1 to add") == 2
        assert all(s["webhookUrl"].endswith("?v=2") for s in api.streams.values())
        assert all(len(a) == 6 for a in api.addresses.values())


def test_dry_run_changes_nothing(tmp_path, receiver):
    with StreamsStandIn(KEY, SECRET) as api:
        cfg = write_config(tmp_path, api.url, receiver.url)
        r = sync(cfg, "--dry-run")
        assert r.returncode == 0 and r.stdout.count("create stream") == 2 and "dry run" in r.stdout
        assert all(m == "GET" for m, _, _ in api.calls) and not api.streams
        r = sync(cfg, "--dry-run", key=None)
        assert r.returncode == 0 and "planned as if no stream existed" in r.stdout


def test_refused_key_is_exit_1_and_names_the_call(tmp_path, receiver):
    with StreamsStandIn(KEY + "-other", SECRET) as api:
        r = sync(write_config(tmp_path, api.url, receiver.url))
        assert r.returncode == 1 and "GET /streams/evm: HTTP 401: Unauthorized" in r.stderr


def test_test_webhook_refused_means_the_stream_is_not_created(tmp_path, receiver):
    with StreamsStandIn(KEY, SECRET + "-not-ours") as api:   # signs with another secret: 401
        r = sync(write_config(tmp_path, api.url, receiver.url))
        assert r.returncode == 1 and "Could not POST to webhook URL" in r.stderr
        assert not api.streams


def test_bad_input_is_exit_2(tmp_path):
    cfg = write_config(tmp_path, "http://127.0.0.1:9", "https://example.org/hook")
    r = sync(cfg, key=None)
    assert r.returncode == 2 and "MORALIS_API_KEY is not set" in r.stderr
    cfg.write_text(cfg.read_text().replace('webhook_url = "https://example.org/hook"', ""))
    r = sync(cfg)
    assert r.returncode == 2 and "moralis.webhook_url is empty" in r.stderr
    cfg.write_text('[roles.a]\nkind = "roles.agents:Agent"\n')
    assert sync(cfg).returncode == 2


def test_retry_after_forms():
    assert streams._retry_after("3", 1.0) == 3.0
    assert streams._retry_after(None, 2.0) == 2.0
    assert streams._retry_after("soon", 4.0) == 4.0
    assert 0 <= streams._retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1.0) <= 1.0
