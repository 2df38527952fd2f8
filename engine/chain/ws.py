"""A non-blocking WebSocket JSON-RPC client for the role's task manager (no threads, no asyncio).

The role's background work is generators that yield `Wait(fd=..., until=...)` (engine/core/
tasks.py), so the client never blocks: `websockets`' sans-I/O `ClientProtocol` does the framing
(handshake, masking, ping/pong, close) and this module moves its bytes over a non-blocking
socket.  The caller waits on `fileno()` (for writing while `want_write()`), then calls `pump()`,
which reads what the kernel has, up to the first chunk that completes a notification, and
queues the JSON-RPC messages that completed, each with `t_origin`: CLOCK_MONOTONIC ns right
after the `recv` that brought its last bytes.  Once the upgrade is done, whole data frames are
cut out of the bytes here (`_frames`, the hot path: a node's notifications); websockets still
judges every other frame, always given whole ones.

`call(...)` is a generator helper for tasks (`result = yield from ws.call(...)`): it sends a
request and parks on the socket until the answer with that id arrives; subscription
notifications that arrive meanwhile are kept, in order, in `notifications`.

Errors are exceptions the follower counts and survives: `WsClosed` (connection refused, reset,
closed, a handshake the server refused), `RpcTimeout`, `RpcFailure` (a JSON-RPC error object)
and `BadMessage` (an answer of the wrong shape: a lying or broken node).  A frame that is
not JSON-RPC at all is counted in `bad` and skipped.
"""
from __future__ import annotations

import errno
import socket
import time
from collections import deque
from typing import Any, Iterator

import orjson
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from engine.core.tasks import Wait


class WsError(Exception):
    """Base of this module's errors: the message names the endpoint."""


class WsClosed(WsError):
    pass


class RpcTimeout(WsError):
    pass


class BadMessage(WsError):
    pass


class RpcFailure(WsError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, url: str, method: str, error: Any):
        self.code = error.get("code") if isinstance(error, dict) else None
        self.text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        super().__init__(f"{url}: {method}: error {self.code}: {self.text}")


class WsClient:
    def __init__(self, url: str, *, max_size: int = 64 << 20):
        try:
            self.uri = parse_uri(url)
        except InvalidURI as e:
            raise WsError(f"{url}: not a WebSocket URL ({e})") from None
        if self.uri.secure:
            raise WsError(f"{url}: wss:// needs TLS, which this client does not do (use ws://)")
        self.url = url
        self.proto = ClientProtocol(self.uri, max_size=max_size)
        self.max_size = max_size
        self._fast: bytearray | None = None   # frame bytes not yet whole (the fast path), or
                                              # None: websockets parses everything (see _frames)
        self._need = 0                        # bytes of the frame `_fast` begins, when known
        self._head: bytearray | None = bytearray()   # the HTTP response so far (handshake)
        self.sock: socket.socket | None = None
        self.connecting = True        # TCP connect still in progress
        self.open = False             # handshake done
        self.closed = False
        self.close_reason = ""
        self._out = bytearray()
        self._frag: list[bytes] = []
        self._next_id = 1
        self.responses: dict[int, tuple[dict, int]] = {}
        self.notifications: deque[tuple[dict, int]] = deque()
        self.bad = 0                  # frames that were not JSON-RPC
        self.last_bad = ""
        self.bytes_in = 0

    # ------------------------------------------------------------------ socket
    def start(self) -> None:
        """Begin the TCP connect (non-blocking) and queue the HTTP upgrade request."""
        s = socket.socket(socket.AF_INET6 if ":" in self.uri.host else socket.AF_INET,
                          socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        try:
            err = s.connect_ex((self.uri.host, self.uri.port))
        except OSError as e:     # e.g. a name that does not resolve
            self._fail(f"cannot connect: {e}")
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._fail(f"cannot connect: {errno.errorcode.get(err, err)}")
        self.proto.send_request(self.proto.connect())
        self._take_output()

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def want_write(self) -> bool:
        return self.connecting or bool(self._out)

    def wait(self, until: float | None) -> Wait:
        return Wait(fd=self.fileno(), write=self.want_write(), until=until)

    def _fail(self, why: str) -> None:
        self.close(why)
        raise WsClosed(f"{self.url}: {why}")

    def close(self, why: str = "closed") -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        if not self.closed:
            self.closed, self.close_reason, self.open = True, why, False

    def _take_output(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self._out += chunk

    def _flush(self) -> None:
        if self.connecting:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(f"cannot connect: {errno.errorcode.get(err, err)}")
            try:
                self.sock.getpeername()
            except OSError:
                return     # still connecting
            self.connecting = False
        while self._out:
            try:
                n = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._fail(f"send failed: {e.strerror or e}")
            del self._out[:n]

    # ------------------------------------------------------------------ reading
    def pump(self) -> int:
        """Send what is queued, read what has arrived; subscription notifications go to
        `notifications`, answers to `responses`.  Returns how many notifications completed.
        Reading stops after the first chunk that completes a notification, so the caller
        applies it before the bytes behind it are parsed (call again for those: the socket is
        still readable).  Raises WsClosed when the connection ended."""
        if self.closed or self.sock is None:
            raise WsClosed(f"{self.url}: {self.close_reason or 'not connected'}")
        self._flush()
        if self.connecting:
            return 0
        out: list = []
        while True:
            try:
                data = self.sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._fail(f"receive failed: {e.strerror or e}")
            t_origin = time.monotonic_ns()
            if not data:
                self.proto.receive_eof()
                self._events(t_origin, out)
                self._fail("the server closed the connection")
            self.bytes_in += len(data)
            if self._fast is not None:
                self._frames(data, t_origin, out)
            elif self._head is not None:
                self._handshake_bytes(data, t_origin, out)
            else:
                self.proto.receive_data(data)
                self._events(t_origin, out)
            if out:
                break
        self._take_output()    # pongs, close frames
        if self._out:
            self._flush()
        return len(out)

    def _handshake_bytes(self, data: bytes, t_origin: int, out: list) -> None:
        """Before the upgrade: websockets gets the HTTP response and not a byte more, so it
        has consumed nothing of a frame when the fast path (`_frames`) takes over."""
        head = self._head
        seen = len(head)
        head += data
        end = head.find(b"\r\n\r\n", max(0, seen - 3))
        if end < 0:
            self.proto.receive_data(data)
            self._events(t_origin, out)
            return
        cut = end + 4 - seen            # the bytes of `data` that end the response
        self._head = None
        self.proto.receive_data(data[:cut])
        self._events(t_origin, out)
        if self.open:
            self._fast = bytearray()
            if cut < len(data):
                self._frames(data[cut:], t_origin, out)
        elif cut < len(data):           # no upgrade after all: websockets judges the rest
            self.proto.receive_data(data[cut:])
            self._events(t_origin, out)

    def _frames(self, data: bytes, t_origin: int, out: list) -> None:
        """The fast path: whole, final, unmasked text or binary frames (what a node sends) are
        cut out of the bytes here, ~10x less Python than websockets' generator parser, and
        go straight to `_message`.  Any other whole frame (ping, close, a fragment) is handed
        to websockets, which therefore only ever sees whole frames and stays at a frame
        boundary; a header it alone can judge (reserved bits, a mask, over max_size) hands it
        everything from there on, for good."""
        buf = self._fast
        if buf:
            buf += data
            if len(buf) < self._need:      # a big frame still arriving: no copy per chunk
                return
            data = bytes(buf)
        n, pos, limit = len(data), 0, self.max_size
        self._need = 0
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            size, head = b1 & 0x7F, 2
            if size == 126:
                if n - pos < 4:
                    break
                size, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if n - pos < 10:
                    break
                size, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            if b0 & 0x70 or b1 & 0x80 or size > limit:
                self._fast = None
                self.proto.receive_data(data[pos:])
                self._events(t_origin, out)
                return
            end = pos + head + size
            if end > n:
                self._need = end - pos
                break
            if b0 & 0x80 and (b0 & 0x0F) in (1, 2) and not self._frag:
                self._message(data[pos + head:end], t_origin, out)
            else:
                self.proto.receive_data(data[pos:end])
                self._events(t_origin, out)
            pos = end
        buf[:] = data[pos:] if pos < n else b""

    def _events(self, t_origin: int, out: list) -> None:
        for ev in self.proto.events_received():
            if isinstance(ev, Response):
                if self.proto.handshake_exc is not None:
                    self._fail(f"WebSocket handshake refused: {self.proto.handshake_exc}")
                self.open = True
                continue
            op = ev.opcode
            if op in (Opcode.TEXT, Opcode.BINARY) or (op is Opcode.CONT and self._frag):
                self._frag.append(ev.data)
                if not ev.fin:
                    continue
                payload, self._frag = b"".join(self._frag), []
                self._message(payload, t_origin, out)
            elif op is Opcode.CLOSE:
                self._take_output()
                self._flush_quietly()
                self._fail("the server closed the WebSocket")
        if self.proto.handshake_exc is not None and not self.open:
            self._fail(f"WebSocket handshake refused: {self.proto.handshake_exc}")

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except WsClosed:
            pass

    def _message(self, payload: bytes, t_origin: int, out: list) -> None:
        """A frame that is not JSON-RPC is counted (`bad`, `last_bad`) and skipped: the frames
        around it are still good, and a node that sends nothing else times out its calls."""
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._bad(f"a frame that is not JSON ({payload[:60]!r})")
            return
        msgs = msg if isinstance(msg, list) else [msg]
        for m in msgs:
            if not isinstance(m, dict):
                self._bad(f"a JSON-RPC message that is not an object: {m!r:.60}")
            elif m.get("method") == "eth_subscription":
                out.append(None)
                self.notifications.append((m, t_origin))
            elif isinstance(m.get("id"), int):
                self.responses[m["id"]] = (m, t_origin)
            else:
                self._bad(f"an unexpected JSON-RPC message: {m!r:.80}")

    def _bad(self, why: str) -> None:
        self.bad += 1
        self.last_bad = f"{self.url}: {why}"

    # ------------------------------------------------------------------ requests
    def send(self, method: str, params: list | None = None) -> int:
        """Queue one request; returns its id."""
        if self.closed:
            raise WsClosed(f"{self.url}: {self.close_reason}")
        rid = self._next_id
        self._next_id += 1
        self.proto.send_text(orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                           "params": params or []}))
        self._take_output()
        if not self.connecting:
            self._flush()
        return rid

    def handshake(self, timeout: float) -> Iterator[Wait]:
        """Wait until the WebSocket is open (a task helper)."""
        deadline = time.monotonic() + timeout
        while not self.open:
            if time.monotonic() >= deadline:
                self._fail(f"no WebSocket handshake within {timeout:g} s")
            yield self.wait(deadline)
            self.pump()

    def call(self, method: str, params: list | None = None, *,
             timeout: float = 5.0) -> Iterator[Wait]:
        """`result = yield from ws.call(...)`: the request's result, or RpcFailure/RpcTimeout."""
        rid = self.send(method, params)
        deadline = time.monotonic() + timeout
        while rid not in self.responses:
            if time.monotonic() >= deadline:
                raise RpcTimeout(f"{self.url}: {method}: no answer within {timeout:g} s")
            yield self.wait(deadline)
            self.pump()
        return self.result(rid, method)

    def answered(self, rid: int) -> bool:
        """Whether the answer to request `rid` (from `send`) has arrived."""
        return rid in self.responses

    def result(self, rid: int, method: str) -> Any:
        """The arrived answer's result (taken out), or RpcFailure / BadMessage."""
        msg, _ = self.responses.pop(rid)
        if "error" in msg and msg["error"] is not None:
            raise RpcFailure(self.url, method, msg["error"])
        if "result" not in msg:
            raise BadMessage(f"{self.url}: {method}: an answer with neither result nor error")
        return msg["result"]

    def statistics(self) -> dict:
        return {"url": self.url, "open": self.open, "bytes_in": self.bytes_in, "bad": self.bad}
