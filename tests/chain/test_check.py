"""`syndicate check` against the real devnet: good endpoints pass, and each bad one fails with
its reason (a closed port, a node of another chain, a garbage HTTP server, a node whose head
is stale), local listeners are probed, exit 0 / 1 / 2 as documented."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.chain.endpoint_check import probe_submit, redact
from metricshelp import free_port

ROOT = Path(__file__).resolve().parents[2]


class _Garbage(BaseHTTPRequestHandler):
    """Answers every request with a web page: not JSON-RPC, not a WebSocket."""
    def _page(self):
        body = b"<html><body>hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, *a):
        pass


class _Stale(BaseHTTPRequestHandler):
    """A JSON-RPC node of Arbitrum whose latest block is from 1970 (a node stuck far behind)."""
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = {"eth_chainId": "0xa4b1",
                  "eth_getBlockByNumber": {"number": "0x10", "timestamp": "0x3e8"}}[req["method"]]
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    made = []

    def start(handler) -> int:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        made.append(srv)
        return srv.server_address[1]
    yield start
    for srv in made:
        srv.shutdown()
        srv.server_close()


def _config(tmp_path, chains: str, extra: str = "") -> Path:
    p = tmp_path / "check.toml"
    p.write_text(f'[engine]\nname = "chk"\nstate_dir = "{tmp_path}/state"\n\n{extra}\n{chains}\n'
                 '[roles.spot]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n')
    return p


def _check(path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "check", "-c", str(path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_good_and_bad_endpoints(devnet, tmp_path, server, monkeypatch):
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", "s")     # [moralis] is validated as `run` does
    m = devnet.manifest["chains"]
    arb_rpc, arb_ws, base_rpc, base_ws = (m["arbitrum"]["rpc_url"], m["arbitrum"]["ws_url"],
                                          m["base"]["rpc_url"], m["base"]["ws_url"])
    # a port bound and not listening refuses every connection, and nobody else can take it
    # while it is held (a port found free and released was once taken by a parallel test's node)
    closed_sock = socket.socket()
    closed_sock.bind(("127.0.0.1", 0))
    closed, garbage, stale = closed_sock.getsockname()[1], server(_Garbage), server(_Stale)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_port, metrics_port = busy.getsockname()[1], free_port()
    chains = (f'[chains.arbitrum]\nrpc = ["{arb_rpc}", "http://127.0.0.1:{closed}", "{base_rpc}", '
              f'"http://127.0.0.1:{garbage}/", "http://127.0.0.1:{stale}/key/abc"]\n'
              f'ws = ["{arb_ws}", "ws://127.0.0.1:{closed}", "ws://127.0.0.1:{garbage}"]\n\n'
              f'[chains.base]\nrpc = ["{base_rpc}"]\nws = ["{base_ws}"]\n')
    extra = (f'[moralis]\nlisten = ["127.0.0.1:{busy_port}"]\n\n'
             f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    path = _config(tmp_path, chains, extra)
    try:
        r = _check(path, "--json", "--max-age", "1e9")   # the devnet's state may come from a cache
        t = _check(path, "--max-age", "1e9")             # the table
    finally:
        busy.close()
        closed_sock.close()
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["valid"] and not doc["ok"]
    rows = {(x["check"], x["target"]): x for x in doc["checks"]}

    def row(check, url):
        return rows[(check, redact(url))]
    for chain, rpc, ws in (("arbitrum", arb_rpc, arb_ws), ("base", base_rpc, base_ws)):
        assert row(f"{chain} rpc chain id", rpc)["ok"], row(f"{chain} rpc chain id", rpc)
        assert row(f"{chain} rpc head", rpc)["ok"] and "block " in row(f"{chain} rpc head", rpc)["detail"]
        assert row(f"{chain} ws subscribe", ws)["ok"], row(f"{chain} ws subscribe", ws)
    refused = row("arbitrum rpc chain id", f"http://127.0.0.1:{closed}")
    assert not refused["ok"] and "refused" in refused["detail"]
    wrong = rows[("arbitrum rpc chain id", redact(base_rpc))]
    assert not wrong["ok"] and wrong["detail"] == "eth_chainId is 8453, expected 42161"
    junk = row("arbitrum rpc chain id", f"http://127.0.0.1:{garbage}/")
    assert not junk["ok"] and "not JSON" in junk["detail"]
    old = row("arbitrum rpc head", f"http://127.0.0.1:{stale}/key/abc")
    assert row("arbitrum rpc chain id", f"http://127.0.0.1:{stale}/x")["ok"]
    assert not old["ok"] and "the node is behind" in old["detail"]
    assert "/key/abc" not in r.stdout      # a path (where keys live) is never printed
    for url in (f"ws://127.0.0.1:{closed}", f"ws://127.0.0.1:{garbage}"):
        assert not row("arbitrum ws subscribe", url)["ok"]
    assert not rows[("moralis listen", f"127.0.0.1:{busy_port}")]["ok"]
    assert rows[("metrics listen", f"127.0.0.1:{metrics_port}")]["detail"] == "free"
    assert sum(not x["ok"] for x in doc["checks"]) == 7

    # the table: one row per check, the same verdicts
    assert t.returncode == 1
    lines = t.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "TARGET", "RESULT"] and len(lines) == len(doc["checks"]) + 2
    assert "FAIL  eth_chainId is 8453, expected 42161" in t.stdout
    assert lines[-1].endswith(f"{len(doc['checks']) - 7} of {len(doc['checks'])} checks OK")


def test_all_good_is_exit_0_and_an_invalid_file_exit_2(devnet, tmp_path):
    m = devnet.manifest["chains"]["arbitrum"]
    path = _config(tmp_path, f'[chains.arbitrum]\nrpc = ["{m["rpc_url"]}"]\nws = ["{m["ws_url"]}"]\n')
    r = _check(path, "--max-age", "1e9")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 of 3 checks OK" in r.stdout
    bad = _config(tmp_path, '[chains.arbitrum]\nrpc = ["ftp://x"]\n')
    r = _check(bad, "--json")
    assert r.returncode == 2 and "check.toml:7: chains.arbitrum.rpc" in r.stderr
    assert json.loads(r.stdout)["valid"] is False
    assert _check(tmp_path / "missing.toml").returncode == 2


def test_submission_endpoint_probe(devnet, server):
    url = devnet.manifest["chains"]["polygon"]["rpc_url"]
    assert probe_submit(url, 137)[0].ok
    assert probe_submit(url, 42161)[0].detail == "eth_chainId is 137, expected 42161"
    bad = probe_submit(f"http://127.0.0.1:{server(_Garbage)}", 137)[0]
    assert not bad.ok and "not JSON" in bad.detail
