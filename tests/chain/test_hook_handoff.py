"""The webhook hand-off end to end: a devnet swap seen on the monitor's WebSocket and delivered by
Moralis (signed bodies over real HTTP to the real receiver role) is one record in events.<chain>;
the executor is not interrupted by the hand-off records."""
from __future__ import annotations

import asyncio
import socket

import pytest

from engine.config import CHAINS
from enginehelp import agent
from ingresshelp import own_devnet
from test_moralis_devnet import as_moralis_body

import sys, pathlib  # noqa: E401  (the webhook tests' helpers)
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "webhook"))
from moralishelp import sign  # noqa: E402

devnet = pytest.fixture(scope="module")(own_devnet)
SECRET = "handoff-secret"
PATH = "/webhooks/moralis"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _post(url: str, body: bytes) -> int:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers={"x-signature": sign(body, SECRET)}) as r:
            return r.status


def _feed(e, chain):
    r = e.roles().get(f"monitor-{chain}") or {}
    return ((r.get("info") or {}).get("chains") or {}).get(chain) or {}


def _engine(devnet, engine_factory, tmp_path, monkeypatch, chain):
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", SECRET)
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    port = _port()
    e = engine_factory(roles={f"monitor-{chain}": {"kind": "roles.monitor:ChainMonitor",
                                                   "chains": [chain]},
                              "exec": {**agent([chain]), "kind": "roles.agents:Executor",
                                       "subscribe": False, "inbox": "interrupt"}},
                       moralis={"listen": [f"127.0.0.1:{port}"], "path": PATH},
                       rings={"slot_size": 1024},
                       chains={"manifest": str(manifest)}).start()
    e.wait_for(lambda: _feed(e, chain).get("follower", {}).get("active"), 30, "following")
    return e, port


def _swap(devnet, chain, seed):
    """One devnet swap: its pool logs and its block."""
    from scripts.devnet import Traffic
    w3 = devnet.w3(chain)
    start = w3.eth.block_number + 1
    Traffic(devnet.manifest, rate=1000, seed=seed, chains=[chain]).step()
    rpc = w3.provider.make_request
    logs = rpc("eth_getLogs", [{"fromBlock": hex(start), "toBlock": "latest"}])["result"]
    pools = {p["address"].lower() for p in devnet.manifest["chains"][chain]["pools"]}
    logs = [lg for lg in logs if lg["address"].lower() in pools]
    assert logs
    return logs, rpc("eth_getBlockByHash", [logs[0]["blockHash"], False])["result"]


def _deliver(port, chain, logs, block, order=(False, True)):
    for confirmed in order:
        body = as_moralis_body(logs, block, confirmed).replace(
            b'"0xa4b1"', f'"{hex(CHAINS[chain])}"'.encode())
        assert asyncio.run(_post(f"http://127.0.0.1:{port}{PATH}", body)) == 200


def test_swap_seen_by_websocket_and_webhook_is_one_record(devnet, engine_factory, tmp_path,
                                                          monkeypatch):
    chain = "base"
    e, port = _engine(devnet, engine_factory, tmp_path, monkeypatch, chain)
    logs, block = _swap(devnet, chain, 5)
    e.wait_for(lambda: _feed(e, chain).get("events") == len(logs), 30, "the WebSocket's records")
    _deliver(port, chain, logs, block)
    # the receiver drops the confirmed copy; the monitor's book drops the unconfirmed one
    e.wait_for(lambda: _feed(e, chain).get("hooks", {}).get("records", 0) >= 1, 30,
               "the hand-off applied", poll=0.2)
    f = _feed(e, chain)
    assert f["hooks"]["logs"] == len(logs) and f["hooks"]["dropped"] == len(logs)
    assert f["hooks"]["applied"] == 0 and f["events"] == len(logs)
    assert e.roles()["exec"]["interrupts"] == 0     # hook records go to the monitors only
    assert e.stop() == 0


def test_webhook_first_is_applied_and_the_websocket_copy_dropped(devnet, engine_factory, tmp_path,
                                                                 monkeypatch):
    """The monitor's background (its WebSocket follower) paused: the webhook alone applies the
    swap (a switch runs while paused); resumed, the WebSocket's copies are duplicates."""
    import time
    chain = "base"
    e, port = _engine(devnet, engine_factory, tmp_path, monkeypatch, chain)
    before = _feed(e, chain)["events"]
    assert e.cli("ctl", "-c", str(e.path), f"monitor-{chain}", "pause").returncode == 0
    time.sleep(0.5)
    logs, block = _swap(devnet, chain, 6)
    _deliver(port, chain, logs, block, order=(True, False))     # confirmed first
    time.sleep(1.0)
    assert e.cli("ctl", "-c", str(e.path), f"monitor-{chain}", "resume").returncode == 0
    e.wait_for(lambda: _feed(e, chain).get("hooks", {}).get("logs") == len(logs), 30,
               "the webhook applied", poll=0.2)
    time.sleep(2.0)            # the resumed follower reads the queued notifications
    time.sleep(1.0)
    applied = _feed(e, chain)["hooks"]["applied"]
    assert applied >= 1                  # the swap's state record came from the webhook
    assert _feed(e, chain)["events"] - before == applied   # the WebSocket added none
    assert e.stop() == 0


def test_webhooks_alone_keep_a_monitor_without_websocket(devnet, engine_factory, tmp_path,
                                                         monkeypatch):
    """Only HTTP endpoints and Moralis: the monitor reads the pools over HTTP at start and the
    webhook deliveries alone move them; the book equals the chain afterwards (drift checks)."""
    chain = "polygon"
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", SECRET)
    port = _port()
    pools = [p["address"] for p in devnet.manifest["chains"][chain]["pools"]]
    e = engine_factory(roles={f"monitor-{chain}": {"kind": "roles.monitor:ChainMonitor",
                                                   "chains": [chain]}},
                       moralis={"listen": [f"127.0.0.1:{port}"], "path": PATH},
                       rings={"slot_size": 1024},
                       chains={chain: {"rpc": [devnet.rpc_url(chain)], "pools": pools,
                                       "drift_interval": 0.5}}).start()
    e.wait_for(lambda: "pools read at block" in _feed(e, chain).get("follower", {}).get("status", ""),
               30, "the pools read over HTTP")
    assert _feed(e, chain)["book"]["pools"] == len(pools)
    for seed in (21, 22, 23):
        logs, block = _swap(devnet, chain, seed)
        _deliver(port, chain, logs, block)
    e.wait_for(lambda: _feed(e, chain).get("events") == 3, 30, "three swaps applied", poll=0.2)
    e.wait_for(lambda: _feed(e, chain).get("drift_checks", 0) >= 2, 30, "drift checks", poll=0.3)
    f = _feed(e, chain)
    assert f["drift"] == 0, f["drift_last"]
    assert "webhooks only" in e.roles()[f"monitor-{chain}"]["info"]["summary"]
    assert e.stop() == 0


def test_a_webhook_of_a_block_the_chain_has_replaced_is_not_applied(devnet, engine_factory,
                                                                    tmp_path, monkeypatch):
    """Moralis delivers an unconfirmed block late, after the node replaced it (anvil_reorg)
    and the monitor followed the node: its logs name a height the follower holds under another
    hash, so they are counted as orphaned and change nothing."""
    chain = "base"
    e, port = _engine(devnet, engine_factory, tmp_path, monkeypatch, chain)
    w3 = devnet.w3(chain)
    logs, block = _swap(devnet, chain, 8)
    e.wait_for(lambda: _feed(e, chain).get("follower", {}).get("head", 0) >= int(block["number"], 16),
               30, "the swap's block followed")
    depth = w3.eth.block_number - int(block["number"], 16) + 1
    assert "error" not in w3.provider.make_request("anvil_reorg", [depth, []])
    w3.provider.make_request("evm_mine", [])     # a new head: the follower sees the reorg
    e.wait_for(lambda: _feed(e, chain).get("follower", {}).get("reorgs", 0) >= 1, 30,
               "the reorg followed", poll=0.2)
    before = _feed(e, chain)["events"]
    _deliver(port, chain, logs, block, order=(False,))
    e.wait_for(lambda: _feed(e, chain).get("hooks", {}).get("logs") == len(logs), 30,
               "the hand-off read", poll=0.2)
    f = _feed(e, chain)
    assert f["hooks"]["orphaned"] == len(logs) and f["hooks"]["applied"] == 0
    assert f["events"] == before
    assert e.stop() == 0
