"""The managed devnet's decisions and its refusals, without a devnet: when `syndicate run` starts
one (engine/devnet/managed.off_reason), that the dev key is accepted only against anvil with the
devnet's chain id (ManagedDevnet.verify against local JSON-RPC servers that answer as another
node would), the command line's bad input (exit 2, naming what), and `--duration` with the
summary on an engine without chains.  The main job on the real devnet is
tests/chain/test_main_job.py."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


import pytest

from engine import config
from engine.devnet.managed import DevnetError, ManagedDevnet, chains_of, off_reason
from enginehelp import LIGHT, ROOT, Engine

ROLE = {"roles": {"a": {"kind": "roles.agents:Agent", "chains": ["base"]}}}


def cfg(**sections):
    return config.from_dict({**ROLE, **sections}, check_env=False)


@pytest.mark.parametrize("sections,why", [
    ({}, "managed = false"),
    ({"devnet": {"managed": False}}, "managed = false"),
    ({"devnet": {"managed": True}, "chains": {"arbitrum": {"rpc": ["http://127.0.0.1:1"]}}},
     "[chains.arbitrum] names its own endpoints (rpc)"),
    ({"devnet": {"managed": True}, "chains": {"base": {"ws": ["ws://127.0.0.1:1"]}}},
     "[chains.base] names its own endpoints (ws)"),
    ({"devnet": {"managed": True}, "chains": {"polygon": {"submit": {"endpoints": [
        {"kind": "public", "url": "http://127.0.0.1:1"}]}}}}, "submit.endpoints"),
])
def test_the_devnet_stays_off_when_asked_or_when_the_file_names_endpoints(sections, why):
    assert why in off_reason(cfg(**sections))


def test_the_devnet_is_managed_by_default_in_the_shipped_file_and_on_the_roles_chains():
    shipped = config.load(ROOT / "engine.toml", check_env=False)
    assert off_reason(shipped) is None and shipped.devnet["trade"] == "live"
    assert shipped.engine["mode"] == "paper"       # paper stays the default everywhere else
    assert chains_of(shipped) == ["arbitrum", "base", "polygon"]
    assert chains_of(cfg(devnet={"managed": True})) == ["base"]


class _Node(BaseHTTPRequestHandler):
    answers: dict = {}

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"],
                           "result": self.answers[req["method"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def node():
    """A JSON-RPC server on loopback answering as the test says (a node we cannot run here)."""
    servers = []

    def make(client: str, chain_id: int) -> str:
        handler = type("Node", (_Node,), {"answers": {"web3_clientVersion": client,
                                                      "eth_chainId": hex(chain_id)}})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def _net(url: str) -> ManagedDevnet:
    net = ManagedDevnet.__new__(ManagedDevnet)
    net.manifest = {"chains": {"arbitrum": {"rpc_url": url}}}
    return net


@pytest.mark.parametrize("client,chain_id,needle", [
    ("Geth/v1.14.11-stable/linux-amd64/go1.23.2", 42161, "not anvil"),
    ("Nitro/v3.2.1", 42161, "not anvil"),
    ("anvil/v1.4.3", 1, "chain id 1, the devnet's is 42161"),
])
def test_the_dev_key_is_refused_unless_every_chain_is_anvil_with_the_devnets_chain_id(
        node, client, chain_id, needle):
    with pytest.raises(DevnetError, match=needle):
        _net(node(client, chain_id)).verify(["arbitrum"])


def test_anvil_with_the_devnets_chain_id_passes_and_a_silent_node_is_named(node):
    _net(node("anvil/v1.4.3", 42161)).verify(["arbitrum"])
    with pytest.raises(DevnetError, match="arbitrum: http://127.0.0.1:9 does not answer"):
        _net("http://127.0.0.1:9").verify(["arbitrum"])
    with pytest.raises(DevnetError, match="base: not in the devnet's manifest"):
        _net(node("anvil/v1.4.3", 42161)).verify(["arbitrum", "base"])


def _run(*args, cwd=ROOT, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["--duration", "0"], "--duration 0: must be > 0"),
    (["--duration", "-3"], "--duration -3: must be > 0"),
    (["--duration", "soon"], "invalid float value"),
])
def test_bad_duration_exits_2(args, needle):
    r = _run(*args, "--check")
    assert r.returncode == 2 and needle in r.stderr, r.stderr


@pytest.mark.parametrize("table,needle", [
    ("[devnet]\nrival = 2\n", "devnet.rival: must be in 0..1"),
    ("[devnet]\ntraffic = 0\n", "devnet.traffic: must be > 0"),
    ("[devnet]\ntrade = \"yolo\"\n", "devnet.trade: must be one of 'live', 'paper'"),
    ("[devnet]\nmanaged = \"yes\"\n", "devnet.managed"),
    ("[devnet]\nport = 1\n", "devnet.port: unknown key"),
])
def test_bad_devnet_section_exits_2_naming_the_key(tmp_path, table, needle):
    p = tmp_path / "engine.toml"
    p.write_text(table + '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["base"]\n')
    r = _run("-c", str(p))
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_check_says_whether_the_devnet_is_managed(tmp_path):
    r = _run("--check")
    assert r.returncode == 0 and "devnet: managed" in r.stdout, r.stdout
    p = tmp_path / "engine.toml"
    p.write_text((ROOT / "engine.toml").read_text() +
                 '\n[chains.base]\nrpc = ["http://127.0.0.1:1"]\n')
    r = _run("-c", str(p), "--check")
    assert r.returncode == 0 and "devnet: off: [chains.base] names its own endpoints" in r.stdout


def test_duration_ends_a_run_without_chains_with_the_final_summary(tmp_path, unique_name):
    roles = {"src": {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"],
                     "options": {"rate": 20.0}},
             "spotter": {"kind": "roles.agents:Agent", "chains": ["arbitrum"], **LIGHT}}
    e = Engine(tmp_path, unique_name, roles)
    try:
        r = _run("-c", str(e.path), "--duration", "3", timeout=90)
        assert r.returncode == 0, r.stderr
        assert "final summary" in r.stdout and "spotter" in r.stdout, r.stdout
        doc = json.loads((tmp_path / "state" / "log" / f"{unique_name}.summary.json").read_text())
        assert doc["mode"] == "paper" and "onchain" not in doc
        assert {r["name"] for r in doc["roles"]} == {"src", "spotter"}
        assert next(r for r in doc["roles"] if r["name"] == "spotter")["switches"] > 0
        assert not e.segments() and not e.run_dir.exists()
    finally:
        e.cleanup()



