"""The health of one chain's WebSocket endpoints: what the follower knows of each (`Endpoint`:
head, errors, latency, state) and the background probe of the ones not in use (`Prober`), so
an active node that falls `lag_blocks` behind the best is demoted and the first endpoint in the
configured order comes back once it is healthy again (engine/chain/follow.py uses both).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from engine.core.tasks import Wait

from .ws import BadMessage, WsClient, WsError

if TYPE_CHECKING:
    from .follow import Follower


class Endpoint:
    """One node's WebSocket URL and what we know of its health."""

    def __init__(self, url: str, order: int):
        self.url, self.order = url, order
        self.head = -1               # highest block number it reported
        self.head_at = 0.0           # when (monotonic)
        self.errors = 0
        self.last_error = ""
        self.latency_ms = None       # EWMA of eth_blockNumber round trips
        self.next_try = 0.0
        self.backoff = 0.0
        self.ok_since = None         # monotonic time of the first of the current run of good probes
        self.state = "new"           # new | active | standby | down | demoted | wrong-chain

    def good(self, now: float, head: int, rtt_ms: float) -> None:
        # what the node says now, lower too: a node restarted on a shorter chain, or one that
        # went back in a reorg, must count as behind the others
        if head != self.head:
            self.head, self.head_at = head, now
        self.latency_ms = rtt_ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * rtt_ms
        if self.ok_since is None:
            self.ok_since = now
        if self.state in ("new", "down"):
            self.state = "standby"

    def fail(self, now: float, why: str, *, initial: float, cap: float, state: str = "down") -> None:
        self.errors += 1
        self.last_error = why[:200]
        self.backoff = min(cap, max(initial, self.backoff * 2))
        self.next_try = now + self.backoff
        self.ok_since = None
        self.state = state

    def statistics(self) -> dict:
        return {"url": self.url, "state": self.state, "head": self.head, "errors": self.errors,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
                "last_error": self.last_error}


class Prober:
    """Background health of the endpoints not in use: eth_chainId once, eth_blockNumber each
    run, one connection kept per endpoint."""

    def __init__(self, follower: "Follower"):
        self.f = follower
        self.conns: dict[str, WsClient] = {}

    def run(self) -> Iterator[Wait]:
        f = self.f
        for ep in f.endpoints:
            if ep is f.active or ep.next_try > f.clock():
                continue
            ws = self.conns.get(ep.url)
            try:
                if ws is None:
                    ws = self.conns[ep.url] = WsClient(ep.url)
                    ws.start()
                    yield from ws.handshake(f.timeout)
                    cid = quantity((yield from ws.call("eth_chainId", timeout=f.timeout)), "chain id")
                    if cid != f.s["chain_id"]:
                        raise ValueError(f"chain id {cid}, expected {f.s['chain_id']}")
                t0 = f.clock()
                h = quantity((yield from ws.call("eth_blockNumber", timeout=f.timeout)), "block")
                ws.notifications.clear()
                ep.good(f.clock(), h, (f.clock() - t0) * 1e3)
                if ep.state == "demoted" and not f.lagging(ep):
                    ep.state = "standby"
            except (WsError, ValueError, KeyError, TypeError) as e:
                self.conns.pop(ep.url, None)
                if ws is not None:
                    ws.close()
                f._backoff(ep, f"{type(e).__name__}: {e}",
                           "wrong-chain" if "chain id" in str(e) else "down")

    def close(self) -> None:
        for ws in self.conns.values():
            ws.close()
        self.conns.clear()


def quantity(v, what: str) -> int:
    """A JSON-RPC quantity ("0x1a") or a plain int; anything else is a lying node."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.startswith("0x"):
        return int(v, 16)
    raise BadMessage(f"{what}: not a quantity: {v!r:.60}")
