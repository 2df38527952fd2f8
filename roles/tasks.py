"""Background tasks shared by several roles.

    checksum     CPU-bound.  Extends a BLAKE2b hash chain a few links per step.  Its state (the
                 link count and the digest) can be recomputed by anyone, so it proves that a task
                 resumes with its state intact after every switch, pause and restart; it is also
                 the CPU load of `syndicate bench switch`.  Optional: it runs only where
                 engine.toml asks (`[tasks] checksum = true`, or a role's own
                 `[roles.<name>.tasks.checksum]` table), since it keeps every core busy.
    gas-sampler  Waits on I/O.  Polls an EVM JSON-RPC endpoint (eth_blockNumber, eth_gasPrice)
                 over a non-blocking HTTP/1.1 connection, yielding while the socket is not ready,
                 and keeps an EWMA of the gas price; a move of more than `alert_pct` from the
                 average is recorded as a discovery.  A call that fails (node down, bad answer)
                 fails the run (`Failed`): the role's error count, completion rate and log
                 show it.

Each `run` continues from `self.state`, which is all a checkpoint saves.
"""
from __future__ import annotations

import hashlib
import socket
import time
from urllib.parse import urlsplit

import orjson

from engine.core.tasks import Failed, Priority, Task, TaskContext, Wait


class ChecksumTask(Task):
    name = "checksum"
    priority = Priority.LOW
    interval = 0.0  # continuous: a new run as soon as one ends
    optional = True  # only where engine.toml asks ([tasks] checksum, or the role's own table)
    OPTIONS = {"links_per_run": (int, 20_000, "hash links in one run (a run ends at a multiple)"),
               "links_per_step": (int, 16, "hash links between two safe points (yields)")}

    def initial_state(self):
        return {"n": 0, "digest": hashlib.blake2b(b"syndicate", digest_size=32).hexdigest()}

    def run(self, ctx: TaskContext):
        links = int(self.options["links_per_run"])
        per_step = int(self.options["links_per_step"])
        st = self.state
        end = (st["n"] // links + 1) * links   # a run ends at the next multiple: resumable
        d = bytes.fromhex(st["digest"])
        n = st["n"]
        blake = hashlib.blake2b
        while n < end:
            for _ in range(min(per_step, end - n)):
                d = blake(d, digest_size=32).digest()
                n += 1
            st["n"], st["digest"] = n, d.hex()   # consistent at every yield
            yield None

    @staticmethod
    def expected(n: int) -> str:
        d = hashlib.blake2b(b"syndicate", digest_size=32).digest()
        for _ in range(n):
            d = hashlib.blake2b(d, digest_size=32).digest()
        return d.hex()


class RpcError(Exception):
    pass


class GasSampler(Task):
    name = "gas-sampler"
    priority = Priority.MEDIUM
    interval = 60.0
    OPTIONS = {"rpc": (str, None, "the http:// JSON-RPC endpoint polled (the role sets it)"),
               "timeout": (float, 5.0, "seconds one call may take"),
               "alpha": (float, 0.2, "weight of a new sample in the moving average"),
               "alert_pct": (float, 20.0, "a move this far from the average is a discovery")}

    def initial_state(self):
        return {"samples": 0, "errors": 0, "ewma_gwei": None, "last_block": None,
                "last_gwei": None, "last_error": ""}

    def run(self, ctx: TaskContext):
        url = self.options.get("rpc")
        if not url:
            self.state["last_error"] = "no rpc endpoint configured"
            raise Failed(self.state["last_error"])
        timeout = float(self.options["timeout"])
        try:
            block = yield from _rpc(url, "eth_blockNumber", [], timeout)
            price = yield from _rpc(url, "eth_gasPrice", [], timeout)
        except (OSError, RpcError, ValueError) as e:
            self.state["errors"] += 1
            self.state["last_error"] = f"{url}: {e}"
            raise Failed(self.state["last_error"]) from e   # counted, logged; the task lives on
        gwei = int(price, 16) / 1e9
        st = self.state
        st["samples"] += 1
        st["last_block"], st["last_gwei"] = int(block, 16), gwei
        alpha = float(self.options["alpha"])
        prev = st["ewma_gwei"]
        st["ewma_gwei"] = gwei if prev is None else prev + alpha * (gwei - prev)
        alert = float(self.options["alert_pct"])
        if prev and abs(gwei - prev) / prev * 100 >= alert:
            ctx.discover(self.name, {"kind": "gas-move", "block": st["last_block"],
                                     "gwei": gwei, "ewma_gwei": prev})


def _rpc(url: str, method: str, params: list, timeout: float):
    """One JSON-RPC call over a fresh non-blocking connection; a generator that yields Wait."""
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise RpcError(f"only http:// endpoints are polled here, not {url!r}")
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    req = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json"
           f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        try:
            s.connect((u.hostname, u.port or 80))
        except BlockingIOError:
            pass
        yield Wait(fd=s.fileno(), write=True, until=deadline)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect: {socket.errno.errorcode.get(err, err)}")
        view = memoryview(req)
        while view:
            try:
                view = view[s.send(view):]
            except BlockingIOError:
                yield Wait(fd=s.fileno(), write=True, until=deadline)
        chunks = []
        while True:
            if time.monotonic() > deadline:
                raise RpcError(f"{method}: no answer within {timeout:g} s")
            try:
                data = s.recv(65536)
            except BlockingIOError:
                yield Wait(fd=s.fileno(), until=deadline)
                continue
            if not data:
                break
            chunks.append(data)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RpcError(f"{method}: HTTP {head.split(b' ', 2)[1:2]}")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunk(payload)
    doc = orjson.loads(payload)
    if "error" in doc:
        raise RpcError(f"{method}: {doc['error']}")
    return doc["result"]


def _unchunk(data: bytes) -> bytes:
    out, i = [], 0
    while True:
        j = data.index(b"\r\n", i)
        size = int(data[i:j].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2:j + 2 + size])
        i = j + 2 + size + 2
