"""Helpers for the ingress tests: a loopback TCP proxy that can cut or delay, bad servers, a
driver that runs a follower's tasks in engine/core's TaskManager, and the chain's own logs.

The proxy is threads and plain sockets (tests only): every connection is a pair of pumping
threads; `cut()` closes every open connection mid-stream; `delay` holds each chunk back from
the monitor that long (a node that lags); `stall` drops the node-to-client bytes.
"""
from __future__ import annotations

import select
import socket
import threading
import time


from engine.core.tasks import Task, TaskContext, TaskManager


def own_devnet():
    """A devnet of a test module's own (a module-scoped fixture): its swaps stay out of the
    session devnet, which other tests reset with evm_snapshot/evm_revert."""
    from devnethelp import start_devnet
    yield from start_devnet()


class Proxy:
    def __init__(self, target_port: int, *, delay: float = 0.0):
        self.target = ("127.0.0.1", target_port)
        self.delay = delay
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.down = False            # refuse (close at once) new connections
        self.cuts = 0
        self._stop = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.lsock], [], [], 0.1)
            if not r:
                continue
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b, d in ((c, u, 0.0), (u, c, None)):
                t = threading.Thread(target=self._pump, args=(a, b, d), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, delay) -> None:
        try:
            while not self._stop:
                data = src.recv(65536)
                if not data:
                    break
                d = self.delay if delay is None else delay
                if d:
                    time.sleep(d)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.cuts += 1

    def close(self) -> None:
        self._stop = True
        self.cut()
        self.lsock.close()
        for t in self.threads:
            t.join(timeout=2)


class GarbageServer:
    """Accepts and answers every connection with `reply` bytes, then closes."""

    def __init__(self, reply: bytes):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.url = f"ws://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.reply, self._stop = reply, False
        self.served = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.lsock], [], [], 0.1)
            if r:
                c, _ = self.lsock.accept()
                try:
                    c.settimeout(1)
                    c.recv(4096)
                    c.sendall(self.reply)
                except OSError:
                    pass
                c.close()
                self.served += 1

    def close(self) -> None:
        self._stop = True
        self.t.join(timeout=2)
        self.lsock.close()


class _GenTask(Task):
    priority_name = "critical"

    def __init__(self, name: str, make, interval: float = 0.0):
        super().__init__(name=name, interval=interval, priority="critical")
        self.make = make

    def run(self, ctx):
        return self.make()


class Driver:
    """Runs generator tasks as a role would (TaskManager slices, select on their fds)."""

    def __init__(self, tasks: dict[str, tuple]):
        self.tm = TaskManager([_GenTask(n, m, i) for n, (m, i) in tasks.items()],
                              TaskContext("test"), on_error=self._error)
        self.errors: list[BaseException] = []

    def _error(self, task, exc) -> None:
        self.errors.append(exc)

    def run(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        flag = [False]
        while time.monotonic() < end:
            if until is not None and until():
                return True
            if not self.tm.run_slice(flag):
                t, rd, wr = self.tm.next_wakeup()
                t = min(0.05, t if t is not None else 0.05)
                select.select(rd, wr, [], t)
        return until() if until is not None else True


class StandInBook:
    """The pool book's contract, minimally (the real one: engine/chain/poolbook.py): dedupe by
    (block hash, tx, log index), undo per block.  Records name the log, no pool state."""

    def __init__(self):
        self.applied: dict[tuple, dict] = {}
        self.published: list[dict] = []

    def apply(self, log: dict, t_origin: int):
        key = (log["blockHash"], log["transactionHash"], int(log["logIndex"], 16))
        if len(log["topics"]) == 0 or len(log["data"]) < 2:
            raise ValueError("truncated log")
        if key in self.applied:
            return None
        rec = {"block": int(log["blockNumber"], 16), "block_hash": key[0], "tx": key[1],
               "log_index": key[2], "pool": log["address"].lower(), "interrupt": False,
               "reverted": False, "t_origin": t_origin}
        self.applied[key] = rec
        return rec

    def revert_blocks(self, hashes):
        out = []
        for key in [k for k in self.applied if k[0] in set(hashes)]:
            out.append({**self.applied.pop(key), "reverted": True})
        return out

    def hashes_at(self, number: int) -> list[str]:
        return sorted({k[0].lower() for k, r in self.applied.items() if r["block"] == number})

    def keys(self) -> set:
        return set(self.applied)


def chain_logs(w3, addresses, from_block: int) -> set:
    """The chain's own answer: every watched log after `from_block`, as dedupe keys."""
    from engine.chain.follow import TOPICS
    logs = w3.provider.make_request("eth_getLogs", [{
        "fromBlock": hex(from_block + 1), "toBlock": "latest", "address": addresses,
        "topics": [TOPICS]}])["result"]
    return {(lg["blockHash"], lg["transactionHash"], int(lg["logIndex"], 16)) for lg in logs}


class LyingNode:
    """A real WebSocket JSON-RPC server that plays a node (chain id, subscriptions, one block)
    and then pushes `pushes` (raw text frames) down the log subscription: bad logs, garbage."""

    def __init__(self, chain_id: int, pushes: list[str], head: int = 16):
        from websockets.sync.server import serve
        self.chain_id, self.pushes, self.head = chain_id, pushes, head
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.connections = 0
        self.t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.t.start()

    def _handle(self, conn) -> None:
        import orjson
        self.connections += 1
        answers = {"eth_chainId": hex(self.chain_id), "eth_blockNumber": hex(self.head),
                   "eth_getBlockByNumber": {"hash": "0x" + "11" * 32, "parentHash": "0x" + "10" * 32},
                   "eth_getLogs": [], "eth_unsubscribe": True}
        try:
            for raw in conn:
                req = orjson.loads(raw)
                m = req["method"]
                res = ("0x" + ("aa" if req["params"][0] == "logs" else "bb") * 16
                       if m == "eth_subscribe" else answers.get(m))
                conn.send(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": res}).decode())
                if m == "eth_subscribe" and req["params"][0] == "logs":
                    for p in self.pushes:
                        conn.send(p)
        except Exception:
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.t.join(timeout=2)
