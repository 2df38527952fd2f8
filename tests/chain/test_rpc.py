"""engine/chain/rpc.py against real anvil and against a loopback HTTP server that answers badly."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from engine.chain.rpc import RpcClient, RpcError


# ---- a real node --------------------------------------------------------------------------

@pytest.fixture
def rpc(devnet):
    c = RpcClient(devnet.rpc_url("arbitrum"), batch_size=7)
    yield c
    c.close()


def test_call_and_batch_on_anvil(rpc):
    assert int(rpc.call("eth_chainId", []), 16) == 42161
    n = 30
    out = rpc.batch([("eth_chainId", [])] * n + [("eth_no_such_method", [])] + [("eth_blockNumber", [])])
    assert len(out) == n + 2
    assert all(int(x, 16) == 42161 for x in out[:n])       # chunked by 7, matched back in order
    assert isinstance(out[n], RpcError) and out[n].method == "eth_no_such_method"
    assert out[n].code is not None and out[n].url == rpc.url
    assert int(out[n + 1], 16) >= 0
    assert rpc.statistics()["requests"] >= 1 + 5               # 32 calls in chunks of 7


def test_eth_call_on_anvil(rpc, devnet):
    pool = next(p for p in devnet.manifest["chains"]["arbitrum"]["pools"] if p["kind"] == "v2")
    raw = rpc.eth_call(pool["address"], "0x0dfe1681")          # token0()
    assert len(raw) == 32 and int.from_bytes(raw, "big") == int(pool["token0"], 16)
    with pytest.raises(RpcError) as e:                          # getReserves() on a token: reverts
        rpc.eth_call(pool["token0"], "0x0902f1ac")
    assert e.value.method == "eth_call" and e.value.is_revert


def test_connection_refused():
    with socket.socket() as s:                                  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = RpcClient(f"http://127.0.0.1:{port}")
    with pytest.raises(RpcError) as e:
        c.call("eth_chainId")
    assert f"127.0.0.1:{port}" in str(e.value) and "eth_chainId" in str(e.value)
    assert "refused" in e.value.message.lower() and e.value.code is None
    out = c.batch([("eth_chainId", []), ("eth_blockNumber", [])])
    assert [x.method for x in out] == ["eth_chainId", "eth_blockNumber"]
    assert all(isinstance(x, RpcError) for x in out)


def test_bad_url():
    with pytest.raises(ValueError, match="ws://x"):
        RpcClient("ws://x")


# ---- a server that answers garbage ----------------------------------------------------------

_GATE = {"arrived": threading.Event(), "release": threading.Event()}


class _Garbage(BaseHTTPRequestHandler):
    """Behaviour chosen by the first word of the JSON-RPC method name."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # keep the test output clean
        pass

    def do_POST(self):
        req = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first = req[0] if isinstance(req, list) else req
        mode = first["method"]
        if mode == "notjson":
            return self._send(b"<html>bad gateway</html>")
        if mode == "http500":
            return self._send(b"oops", 500)
        if mode == "wrongid":
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": 999999, "result": "0x1"}))
        if mode == "noresult":
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": first["id"]}))
        if mode == "scalar":
            return self._send(b"42")
        if mode == "slow":
            time.sleep(1.0)
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": first["id"], "result": 1}))
        if mode == "gated":       # answers once the client's meanwhile() let it, or in 5 s
            _GATE["arrived"].set()
            released = _GATE["release"].wait(5.0)
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": first["id"], "result": released}))
        if mode == "hangup":
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"js")
            return
        if mode == "echoauth":
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": first["id"],
                                            "result": self.headers.get("Authorization")}))
        if mode == "batchrefused":
            return self._send(orjson.dumps({"jsonrpc": "2.0", "id": None,
                                            "error": {"code": -32600, "message": "batch too large"}}))
        if isinstance(req, list):  # "partial": answers every other call, reversed, one garbage
            answers = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]}
                       for r in req[::2]][::-1] + ["junk"]
            return self._send(orjson.dumps(answers))
        return self._send(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "ok"}))

    def _send(self, body: bytes, status: int = 200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def garbage():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    c = RpcClient(f"http://127.0.0.1:{srv.server_address[1]}", timeout=0.3, batch_size=4)
    yield c
    c.close()
    srv.shutdown()
    srv.server_close()
    t.join()


@pytest.mark.parametrize("mode,words", [
    ("notjson", "not json"), ("http500", "http 500"), ("wrongid", "id 999999"),
    ("noresult", "neither result nor error"), ("scalar", "not a json-rpc object"),
    ("slow", "timed out"), ("hangup", ""),
])
def test_garbage_answers_are_rpc_errors(garbage, mode, words):
    with pytest.raises(RpcError) as e:
        garbage.call(mode, [])
    assert e.value.method == mode and e.value.url == garbage.url
    assert words in e.value.message.lower()
    assert garbage.call("fine", []) == "ok"                     # the client recovers afterwards


def test_batch_with_missing_reordered_and_junk_answers(garbage):
    out = garbage.batch([("partial", [i]) for i in range(10)])
    assert len(out) == 10
    for i, x in enumerate(out):
        if i % 2 == 0:                                          # each chunk's 1st and 3rd answered
            assert x == i
        else:
            assert isinstance(x, RpcError) and "no answer with id" in x.message


def test_batch_refused_as_a_whole(garbage):
    out = garbage.batch([("batchrefused", []), ("other", [])])
    assert [x.message for x in out] == ["batch too large"] * 2
    assert all(x.code == -32600 for x in out)
    notjson = garbage.batch([("notjson", []), ("x", [])])
    assert all(isinstance(x, RpcError) and "not json" in x.message.lower() for x in notjson)


def test_post_gives_whole_answers_and_names_the_http_status(garbage):
    """`post` (the executor's desk and endpoints): the answer as the node sent it, an error
    object included; a status other than 200 is an RpcError carrying it; per-call headers reach
    the server and do not stick to the connection."""
    assert garbage.post({"jsonrpc": "2.0", "id": 7, "method": "scalar"}, "scalar") == 42
    assert garbage.post([{"jsonrpc": "2.0", "id": 1, "method": "batchrefused"}], "b")["error"]["code"] == -32600
    with pytest.raises(RpcError) as e:
        garbage.post({"jsonrpc": "2.0", "id": 1, "method": "http500"}, "send")
    assert e.value.status == 500 and e.value.method == "send" and e.value.answered
    with pytest.raises(RpcError) as e:
        garbage.post({"jsonrpc": "2.0", "id": 1, "method": "notjson"}, "send")
    assert e.value.answered and e.value.status is None
    with pytest.raises(RpcError) as e:
        garbage.post({"jsonrpc": "2.0", "id": 1, "method": "slow"}, "send")   # timed out
    assert not e.value.answered
    echo = {"jsonrpc": "2.0", "id": 3, "method": "echoauth"}
    assert garbage.post(echo, "e", {"Authorization": "tok"})["result"] == "tok"
    assert garbage.post(echo, "e")["result"] is None


def test_meanwhile_runs_once_the_request_is_written_and_before_the_answer_is_read(garbage):
    """post(meanwhile=): the executor signs while the node simulates.  The server answers only
    after meanwhile() let it, and meanwhile() sees the request already at the server; one that
    raises leaves no half-read answer on the connection."""
    _GATE["arrived"].clear()
    _GATE["release"].clear()
    seen = []

    def meanwhile():
        seen.append(_GATE["arrived"].wait(2.0))
        _GATE["release"].set()
    out = garbage.post({"jsonrpc": "2.0", "id": 1, "method": "gated"}, "g", meanwhile=meanwhile)
    assert seen == [True] and out["result"] is True

    def boom():
        raise KeyError("signer failed")
    with pytest.raises(KeyError, match="signer failed"):
        garbage.post({"jsonrpc": "2.0", "id": 2, "method": "fine"}, "f", meanwhile=boom)
    assert garbage.call("fine", []) == "ok"          # a fresh connection, nothing left to read
    assert garbage.batch([("fine", [1])]) == [1]     # (a batch answer of the "partial" kind)
