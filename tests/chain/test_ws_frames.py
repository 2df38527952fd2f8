"""engine/chain/ws.py's frame parsing over a real loopback socket: the fast path for whole data
frames and the hand-over to websockets for everything else, whatever the byte boundaries."""
from __future__ import annotations

import base64
import hashlib
import select
import socket
import threading
import time

import orjson
import pytest

from engine.chain.ws import WsClient, WsClosed

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, n])
    elif n < 1 << 16:
        head = bytes([b0, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 127]) + n.to_bytes(8, "big")
    return head + payload


def note(i: int, pad: int = 0) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                         "params": {"subscription": "0x1", "result": {"i": i, "pad": "x" * pad}}})


class Server:
    """Accepts one client, answers its upgrade, then sends `chunks` (bytes, one send each,
    a short pause between) appended to the 101 response (the first chunk in the same send)."""

    def __init__(self, chunks: list[bytes]):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.url = f"ws://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.chunks, self.received = chunks, b""
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        c, _ = self.lsock.accept()
        with c:
            req = b""
            while b"\r\n\r\n" not in req:
                req += c.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in req.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i, chunk in enumerate(self.chunks):
                c.sendall(resp + chunk if i == 0 else chunk)
                time.sleep(0.0005 if len(self.chunks) < 2000 else 0)
            c.settimeout(1.0)
            try:
                while True:
                    got = c.recv(4096)
                    if not got:
                        break
                    self.received += got
            except OSError:
                pass

    def close(self) -> None:
        self.lsock.close()
        self.t.join(3)


def drive(ws: WsClient, until, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    ws.start()
    while not until():
        assert time.monotonic() < deadline, "timed out"
        w = ws.wait(deadline)
        select.select([w.fd], [w.fd] if w.write else [], [], 0.05)
        ws.pump()


def split(data: bytes, sizes) -> list[bytes]:
    out, pos, k = [], 0, 0
    while pos < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[pos:pos + n])
        pos += n
        k += 1
    return out


@pytest.mark.parametrize("sizes,pads", [([1], [0, 5, 70]), ([2, 3], [0, 200, 5, 23]),
                                        ([7], [0, 200, 5]), ([130], [0, 200, 70_000, 5, 23]),
                                        ([1 << 20], [0, 200, 70_000, 5, 0, 23, 65_536])])
def test_every_split_delivers_every_message_in_order(sizes, pads):
    # pads: 16-bit and 64-bit lengths, a payload of exactly 126 bytes (pad 23)
    msgs = [note(i, pad) for i, pad in enumerate(pads)]
    stream = b"".join(frame(m, opcode=1 + i % 2) for i, m in enumerate(msgs))
    srv = Server(split(stream, sizes))
    ws = WsClient(srv.url)
    try:
        drive(ws, lambda: len(ws.notifications) == len(msgs), timeout=20)
        assert [m["params"]["result"]["i"] for m, _ in ws.notifications] == list(range(len(msgs)))
        assert ws.bad == 0 and ws._fast is not None     # the fast path carried them
    finally:
        ws.close()
        srv.close()


def test_ping_fragments_and_close_go_through_websockets():
    a, b = note(1, 300), note(2)
    stream = (frame(b"hi", opcode=9)                              # ping: a pong goes back
              + frame(a[:100], opcode=1, fin=False) + frame(a[100:250], opcode=0, fin=False)
              + frame(a[250:], opcode=0)                          # one message in 3 fragments
              + frame(b)
              + frame(b"\x03\xe8", opcode=8))                     # close
    srv = Server(split(stream, [3, 50]))
    ws = WsClient(srv.url)
    try:
        with pytest.raises(WsClosed, match="closed the WebSocket"):
            drive(ws, lambda: False, timeout=10)
        assert [m["params"]["result"]["i"] for m, _ in ws.notifications] == [1, 2]
    finally:
        ws.close()
        srv.close()
    # the client's pong (masked, opcode 0xA) and its close answer reached the server
    assert srv.received and srv.received[0] & 0x0F == 0x0A


def test_reserved_bits_hand_everything_to_websockets_which_fails_the_connection():
    stream = frame(note(1)) + frame(note(2), rsv=0x40) + frame(note(3))
    srv = Server([stream])
    ws = WsClient(srv.url)
    try:
        with pytest.raises(WsClosed):
            drive(ws, lambda: False, timeout=10)
        assert [m["params"]["result"]["i"] for m, _ in ws.notifications] == [1]
        assert ws._fast is None
    finally:
        ws.close()
        srv.close()


def test_garbage_frames_are_counted_not_fatal():
    stream = frame(b"not json") + frame(b"[1, 2]") + frame(note(7))   # 1 + 2 bad
    srv = Server(split(stream, [5]))
    ws = WsClient(srv.url)
    try:
        drive(ws, lambda: len(ws.notifications) == 1)
        assert ws.bad == 3 and ws.notifications[0][0]["params"]["result"]["i"] == 7
    finally:
        ws.close()
        srv.close()
