"""Probes for `syndicate check`: does an endpoint answer as the configuration expects?

    probe_rpc(url, chain_id, max_age)     eth_chainId = the expected id; the latest block's
                                          timestamp at most max_age seconds old  -> 2 results
    probe_ws(url, chain_id)               WebSocket handshake, eth_chainId, eth_subscribe
                                          newHeads answered with a subscription id
    probe_submit(url, chain_id)           a submission endpoint answers JSON-RPC (eth_chainId:
                                          harmless, sends nothing)

Each returns `Probe`s (ok, detail) and never raises: a refused connection, a timeout, an HTTP
error, a body that is not JSON-RPC are each a failed probe with the reason.  URLs are shown
`redact`ed: a provider's key often sits in the path or the query.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from .rpc import RpcClient, RpcError


@dataclass
class Probe:
    check: str      # "rpc chain id", "rpc head", "ws subscribe", "submit"
    ok: bool
    detail: str


def redact(url: str) -> str:
    """scheme://host:port, and "/…" for any path or query (where providers put keys)."""
    p = urlsplit(url)
    host = p.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    tail = "/…" if (p.path not in ("", "/") or p.query) else ""
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{tail}"


def _hex(v, what: str) -> int:
    if not isinstance(v, str) or not v.startswith("0x"):
        raise ValueError(f"{what} is not a hex quantity: {str(v)[:60]!r}")
    return int(v, 16)


def probe_rpc(url: str, chain_id: int, max_age: float, timeout: float = 5.0) -> list[Probe]:
    try:
        rpc = RpcClient(url, timeout=timeout)
    except ValueError as e:
        return [Probe("rpc chain id", False, str(e))]
    try:
        try:
            got = _hex(rpc.call("eth_chainId"), "eth_chainId")
        except (RpcError, ValueError) as e:
            return [Probe("rpc chain id", False, _why(e))]
        if got != chain_id:
            return [Probe("rpc chain id", False, f"eth_chainId is {got}, expected {chain_id}")]
        out = [Probe("rpc chain id", True, f"{got}")]
        try:
            block = rpc.call("eth_getBlockByNumber", ["latest", False])
            if not isinstance(block, dict):
                raise ValueError(f"latest block is not an object: {str(block)[:60]!r}")
            number, ts = _hex(block.get("number"), "number"), _hex(block.get("timestamp"),
                                                                    "timestamp")
        except (RpcError, ValueError) as e:
            return out + [Probe("rpc head", False, _why(e))]
        age = time.time() - ts
        ok = age <= max_age
        out.append(Probe("rpc head", ok, f"block {number}, {age:.0f} s old"
                         + ("" if ok else f" (more than {max_age:g} s: the node is behind)")))
        return out
    finally:
        rpc.close()


def probe_ws(url: str, chain_id: int, timeout: float = 5.0) -> list[Probe]:
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect
    try:
        with connect(url, open_timeout=timeout, close_timeout=1.0, max_size=1 << 22) as ws:
            got = _hex(_ask(ws, 1, "eth_chainId", [], timeout), "eth_chainId")
            if got != chain_id:
                return [Probe("ws subscribe", False, f"eth_chainId is {got}, expected {chain_id}")]
            sub = _ask(ws, 2, "eth_subscribe", ["newHeads"], timeout)
            if not isinstance(sub, str) or not sub:
                return [Probe("ws subscribe", False, f"eth_subscribe answered {str(sub)[:60]!r}")]
            _ask(ws, 3, "eth_unsubscribe", [sub], timeout)
            return [Probe("ws subscribe", True, f"chain {got}, newHeads subscription {sub[:18]}")]
    except (OSError, TimeoutError, WebSocketException, ValueError, RpcError) as e:
        return [Probe("ws subscribe", False, _why(e))]


def _ask(ws, rid: int, method: str, params: list, timeout: float):
    """One JSON-RPC call over the socket: its result (notifications in between skipped)."""
    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).decode())
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{method}: no answer within {timeout:g} s")
        try:
            msg = orjson.loads(ws.recv(timeout=left))
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{method}: answer is not JSON") from e
        if isinstance(msg, dict) and msg.get("id") == rid:
            if msg.get("error") is not None:
                err = msg["error"]
                raise ValueError(f"{method}: {err.get('message', err) if isinstance(err, dict) else err}")
            return msg.get("result")


def probe_submit(url: str, chain_id: int, timeout: float = 5.0) -> list[Probe]:
    """A relay may refuse eth_chainId (it only takes transactions): any JSON-RPC answer shows it
    reachable; a chain id that is answered must be the right one."""
    try:
        rpc = RpcClient(url, timeout=timeout)
    except ValueError as e:
        return [Probe("submit", False, str(e))]
    try:
        got = _hex(rpc.call("eth_chainId"), "eth_chainId")
    except RpcError as e:
        if e.code is not None:     # a JSON-RPC error object: the endpoint speaks JSON-RPC
            return [Probe("submit", True, f"answers JSON-RPC (eth_chainId refused: {e.message[:80]})")]
        return [Probe("submit", False, _why(e))]
    except ValueError as e:
        return [Probe("submit", False, str(e))]
    finally:
        rpc.close()
    if got != chain_id:
        return [Probe("submit", False, f"eth_chainId is {got}, expected {chain_id}")]
    return [Probe("submit", True, f"chain {got}")]


def _why(e: Exception) -> str:
    """The reason without the URL (RpcError's message leaves it out; others are short)."""
    if isinstance(e, RpcError):
        return e.message + (f" (code {e.code})" if e.code is not None else "")
    text = str(e) or type(e).__name__
    if isinstance(e, ConnectionRefusedError) or "Connect call failed" in text:
        return "connection refused"
    return text[:200]
