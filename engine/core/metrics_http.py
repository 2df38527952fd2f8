"""The `/metrics` listener, served from the supervisor's own loop: no thread.

    supervisor loop: select([wake pipe, listener, connections...], [connections with output])
        listener readable ─► accept (non-blocking) ─► connection: read the request head
        head complete ─► GET /metrics ─► Exposition.render (engine/core/metrics.py) ─► write
        written, or its deadline passed ─► close

Why not prometheus_client's start_http_server (a thread per request) or any thread: the
supervisor forks a role at every start and restart, and a fork copies only the forking thread,
with whatever locks and file descriptors the others held at that instant (a logging lock held
by a serving thread deadlocks the child; an accepted connection copied into a role is never
closed by the supervisor's side).  With every socket in the supervisor's one thread, a fork
happens between two steps of this server, never inside one, and the child closes every socket
of it by `close_in_child` (detached first, so nothing in the child closes a reused number
later).  A scrape costs the loop the render (milliseconds); a slow or silent client costs
nothing but its socket, closed at its deadline.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Callable

MAX_HEAD = 16 << 10      # a request head larger than this is refused (431)
ACCEPTS_PER_TURN = 16


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' / '[::1]:9464' / 'localhost:9464' -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def bind(listen: str) -> socket.socket:
    """A non-blocking listening socket on `listen` (OSError if the address cannot be had)."""
    host, port = split_listen(listen)
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(16)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Conn:
    __slots__ = ("sock", "inbuf", "out", "deadline")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.inbuf, self.out, self.deadline = sock, b"", None, deadline


class MetricsServer:
    """`render(accept_header) -> (body, content_type)`; `timeout`: seconds a connection may
    take from accept to its last byte written."""

    def __init__(self, listen: str, render: Callable[[str | None], tuple[bytes, str]], *,
                 timeout: float = 5.0, on_error: Callable[[str], None] = lambda m: None,
                 clock: Callable[[], float] = time.monotonic):
        self.listen, self.render, self.timeout = listen, render, timeout
        self.on_error, self.clock = on_error, clock
        self.sock: socket.socket | None = bind(listen)
        self.address = self.sock.getsockname()[:2]
        self.conns: list[_Conn] = []
        self.served = 0

    def rfds(self) -> list:
        if self.sock is None:
            return []
        return [self.sock, *(c.sock for c in self.conns if c.out is None)]

    def wfds(self) -> list:
        return [c.sock for c in self.conns if c.out is not None]

    def step(self, readable, writable) -> None:
        """One turn: accept, read, answer, write, expire.  Never raises (it runs in the
        supervisor's loop): a failure is reported to on_error and the connection closed."""
        if self.sock is None:
            return
        try:
            if self.sock in readable:
                self._accept()
            now = self.clock()
            for c in list(self.conns):
                try:
                    if c.out is None and c.sock in readable:
                        self._read(c)
                    if c.out is not None and (c.sock in writable or c.sock in readable):
                        self._write(c)
                except OSError:
                    self._drop(c)
                    continue
                if c in self.conns and now >= c.deadline:
                    self._drop(c)
        except Exception as e:   # a bug here must not take the supervisor down
            self.on_error(f"metrics server: {e!r}")

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                s, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # EMFILE and the like: try again next turn
                self.on_error(f"metrics server: accept failed: {e}")
                return
            s.setblocking(False)
            self.conns.append(_Conn(s, self.clock() + self.timeout))

    def _read(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._drop(c)
            return
        c.inbuf += data
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.inbuf) > MAX_HEAD:
                c.out = _response(431, b"request head too large\n", "text/plain")
            return
        c.out = self._answer(c.inbuf[:end].decode("latin-1"))
        c.inbuf = b""

    def _answer(self, head: str) -> bytes:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, b"not an HTTP request\n", "text/plain")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return _response(405, b"GET /metrics\n", "text/plain", extra="Allow: GET, HEAD\r\n")
        if target != "/metrics":
            return _response(404, b"not found: the metrics are at /metrics\n", "text/plain")
        accept = next((ln.split(":", 1)[1].strip() for ln in lines[1:]
                       if ln.lower().startswith("accept:")), None)
        try:
            body, ctype = self.render(accept)
        except Exception as e:   # a collector bug: the scrape fails, the supervisor does not
            self.on_error(f"metrics: collecting failed: {e!r}")
            return _response(500, f"collecting failed: {e!r}\n".encode(), "text/plain")
        self.served += 1
        return _response(200, body, ctype, head_only=method == "HEAD")

    def _write(self, c: _Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        c.out = c.out[n:]
        if not c.out:
            self._drop(c)

    def _drop(self, c: _Conn) -> None:
        if c in self.conns:
            self.conns.remove(c)
        c.sock.close()

    def close_in_child(self) -> None:
        """In a forked role: let go of every socket without touching the supervisor's."""
        for s in [*(c.sock for c in self.conns), *([self.sock] if self.sock else [])]:
            try:
                os.close(s.detach())
            except OSError:
                pass
        self.conns, self.sock = [], None

    def close(self) -> None:
        for c in list(self.conns):
            self._drop(c)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def _response(code: int, body: bytes, ctype: str, *, extra: str = "",
              head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + (b"" if head_only else body)


class _NoServer:
    """[metrics] off: the supervisor's loop calls the same methods, which do nothing."""
    def rfds(self) -> list:
        return []

    wfds = rfds

    def step(self, readable, writable) -> None:
        pass

    close_in_child = close = lambda self: None


NO_SERVER = _NoServer()
