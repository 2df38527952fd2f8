"""The receiver's HTTP side (roles/webhook.py WebhookServer) in this process, on 127.0.0.1 with
a real LMDB store: every status code the issue lists, and the inbox holding exactly what was
acknowledged."""
from __future__ import annotations

import http.client
import json
import socket

import orjson
import pytest

from engine.chain.hooks import INBOX_PREFIX
from engine.core.log import Log
from engine.core.store import Store
from moralishelp import payload, polygon_body, sign
from roles.webhook import Stats, WebhookServer

SECRET = "s3cret-for-tests"
PATH = "/webhooks/moralis"


@pytest.fixture
def server(tmp_path, shared_data):
    store = Store.open(tmp_path / "lmdb", map_size=1 << 20)
    woken = []
    srv = WebhookServer(store, {"listen": ["127.0.0.1:0", "127.0.0.1:0"], "path": PATH,
                                "max_body": 64 * 1024}, SECRET, Stats(),
                        Log("test", stderr=False), on_accept=woken.append)
    srv.start()
    srv.woken = woken
    yield srv
    srv.stop()
    store.close()


def post(port, body: bytes, sig: str | None, method="POST", path=PATH, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Content-Type": "application/json", **(headers or {})}
    if sig is not None:
        h["x-signature"] = sig
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b"null")
    c.close()
    return out


def inbox(store) -> list[dict]:
    with store.read() as r:
        return [rec for _, rec in r.records("inbox", INBOX_PREFIX)]


def test_accepts_signed_deliveries_on_every_listener(server):
    assert len(server.ports) == 2
    body = polygon_body(False)
    for port in server.ports:
        status, doc = post(port, body, sign(body, SECRET))
        assert status == 200 and doc["ok"] and not doc["test"]
    recs = inbox(server.store)
    assert [r["kind"] for r in recs] == ["delivery", "delivery"]
    assert recs[0]["body"].encode() == body and recs[0]["chain"] == "polygon"
    assert recs[0]["logs"] == 8 and recs[0]["confirmed"] is False
    assert server.woken == [1, 2]


def test_test_webhook_is_200_and_recorded_as_a_test(server):
    body = payload("00")
    status, doc = post(server.ports[0], body, sign(body, SECRET)[2:])   # without 0x
    assert status == 200 and doc["test"] is True
    [rec] = inbox(server.store)
    assert rec["kind"] == "test" and rec["body"].encode() == body


@pytest.mark.parametrize("sig", [None, "", "0x" + "00" * 32, "nothex"])
def test_missing_or_wrong_signature_is_401_and_nothing_kept(server, sig):
    body = payload("05")
    status, doc = post(server.ports[0], body, sig)
    assert status == 401 and "x-signature" in doc["error"]
    assert inbox(server.store) == []


def test_signature_with_another_secret_is_401(server):
    body = payload("05")
    assert post(server.ports[0], body, sign(body, SECRET + "x"))[0] == 401


def test_not_json_or_not_the_shape_is_400_naming_the_field(server):
    for body, needle in [(b"{not json", "body: not JSON"),
                         (json.dumps({"confirmed": True}).encode(), "chainId: missing"),
                         (polygon_body(False).replace(b'"0x89"', b'"137"'), "chainId")]:
        status, doc = post(server.ports[0], body, sign(body, SECRET))
        assert status == 400 and needle in doc["error"], doc
    assert inbox(server.store) == []


def test_wrong_method_is_405(server):
    for method in ("GET", "PUT", "DELETE"):
        status, _ = post(server.ports[0], b"", None, method=method)
        assert status == 405


def test_oversize_with_content_length_is_413_without_reading_the_rest(server):
    """Announce 10 MB, send only the headers: the answer comes at once and the connection is
    closed, so the server never waited for (or read) the body."""
    s = socket.create_connection(("127.0.0.1", server.ports[0]), timeout=10)
    s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"x-signature: 0x{'00' * 32}\r\nContent-Length: {10 << 20}\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:100]
    assert inbox(server.store) == []


def test_oversize_chunked_is_413(server):
    c = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=10)
    c.putrequest("POST", PATH)
    c.putheader("Transfer-Encoding", "chunked")
    c.putheader("x-signature", "0x" + "00" * 32)
    c.endheaders()
    chunk = b"x" * 16384
    try:
        for _ in range(8):
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.getresponse().status == 413
    c.close()


def test_truncated_body_is_refused_and_server_stays_up(server):
    body = polygon_body(True)
    s = socket.create_connection(("127.0.0.1", server.ports[0]), timeout=10)
    s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nx-signature: {sign(body, SECRET)}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    s.shutdown(socket.SHUT_WR)
    s.recv(65536)
    s.close()
    assert inbox(server.store) == []
    assert post(server.ports[0], body, sign(body, SECRET))[0] == 200


def test_health_reports_depth_age_and_chains(server):
    body = polygon_body(False)
    post(server.ports[0], body, sign(body, SECRET))
    post(server.ports[0], payload("05"), "0x" + "11" * 32)
    c = http.client.HTTPConnection("127.0.0.1", server.ports[1], timeout=10)
    c.request("GET", "/health")
    r = c.getresponse()
    doc = orjson.loads(r.read())
    assert r.status == 200 and doc["status"] == "ok"
    assert doc["inbox_depth"] == 1 and doc["accepted"] == 1
    assert doc["chains"]["polygon"]["deliveries"] == 1 and doc["refused"] == {"401": 1}
    assert 0 <= doc["last_delivery_age_s"] < 60
    assert doc["inbox_fsync"]["fsyncs"] >= 1 and doc["inbox_fsync"]["p99_s"] > 0


def test_commit_failure_is_503_nothing_half_written_and_health_503(tmp_path, shared_data):
    """A store that cannot grow (map at its maximum) refuses the commit: 503, the inbox holds
    only the earlier, whole deliveries, /health says 503, and the next delivery that fits is
    accepted again."""
    store = Store.open(tmp_path / "small", map_size=1 << 16, max_map_size=1 << 16)
    srv = WebhookServer(store, {"listen": ["127.0.0.1:0"], "path": PATH, "max_body": 1 << 20},
                        SECRET, Stats(), Log("test", stderr=False))
    srv.start()
    try:
        small = payload("05")
        assert post(srv.ports[0], small, sign(small, SECRET))[0] == 200
        doc = json.loads(polygon_body(True))
        doc["pad"] = "x" * 200_000        # an extra field Moralis might add: still valid
        big = json.dumps(doc).encode()
        status, out = post(srv.ports[0], big, sign(big, SECRET))
        assert status == 503 and "retry" in out["error"]
        assert [r["body"].encode() for r in inbox(store)] == [small]
        c = http.client.HTTPConnection("127.0.0.1", srv.ports[0], timeout=10)
        c.request("GET", "/health")
        r = c.getresponse()
        assert r.status == 503 and orjson.loads(r.read())["status"] == "store failing"
        assert post(srv.ports[0], small, sign(small, SECRET))[0] == 200
    finally:
        srv.stop()
        store.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /webhooks/moralis HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /webhooks/moralis HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /webhooks/moralis HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /webhooks/moralis HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"POST /webhooks/moralis HTTP/1.1\r\nx-signature: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /webhooks/moralis HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /nowhere HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
])
def test_malformed_http_never_gets_a_500(server, raw):
    s = socket.create_connection(("127.0.0.1", server.ports[0]), timeout=10)
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    if data:
        status = int(data.split(b" ", 2)[1])
        assert 400 <= status < 500, data[:120]
    assert inbox(server.store) == []
    body = payload("05")
    assert post(server.ports[0], body, sign(body, SECRET))[0] == 200   # still serving
