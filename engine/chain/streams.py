"""The Moralis Streams REST API, for `syndicate moralis sync`: one stream per chain watching our
pools and factories, found again by its tag, so running sync twice changes nothing.

    sync ─► GET  /streams/evm?limit=100[&cursor=…]     every stream; ours are tagged
                                                       "syndicate-<engine>-<chain>"
         ─► PUT  /streams/evm                          create (none with our tag), or
            POST /streams/evm/{id}                     update (webhookUrl, topics, abi… differ)
         ─► GET  /streams/evm/{id}/address?limit=100   the addresses it watches
         ─► POST /streams/evm/{id}/address             {"address": [the missing ones]}

Every call carries `X-API-Key`; the key is never printed, logged or put in an error message.
A 429 (Moralis rate-limits address changes to a few calls a minute) waits for `Retry-After`
(seconds or an HTTP date; doubling from 1 s without one, at most 60 s) and retries, up to
`max_retries` times.  Moralis sends the new stream's test webhook to webhookUrl while it
creates or updates it and refuses the change unless that gets a 2xx: run the receiver first.
"""
from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from .moralis import CHAIN_IDS

# The pool and factory events we follow: Moralis takes topic0 as the event's signature text.
_EVENTS = {
    "Sync(uint112,uint112)": [("uint112", "reserve0", False), ("uint112", "reserve1", False)],
    "Swap(address,uint256,uint256,uint256,uint256,address)": [
        ("address", "sender", True), ("uint256", "amount0In", False),
        ("uint256", "amount1In", False), ("uint256", "amount0Out", False),
        ("uint256", "amount1Out", False), ("address", "to", True)],
    "Swap(address,address,int256,int256,uint160,uint128,int24)": [
        ("address", "sender", True), ("address", "recipient", True), ("int256", "amount0", False),
        ("int256", "amount1", False), ("uint160", "sqrtPriceX96", False),
        ("uint128", "liquidity", False), ("int24", "tick", False)],
    "Mint(address,address,int24,int24,uint128,uint256,uint256)": [
        ("address", "sender", False), ("address", "owner", True), ("int24", "tickLower", True),
        ("int24", "tickUpper", True), ("uint128", "amount", False), ("uint256", "amount0", False),
        ("uint256", "amount1", False)],
    "Burn(address,int24,int24,uint128,uint256,uint256)": [
        ("address", "owner", True), ("int24", "tickLower", True), ("int24", "tickUpper", True),
        ("uint128", "amount", False), ("uint256", "amount0", False), ("uint256", "amount1", False)],
    "PairCreated(address,address,address,uint256)": [
        ("address", "token0", True), ("address", "token1", True), ("address", "pair", False),
        ("uint256", "", False)],
    "PoolCreated(address,address,uint24,int24,address)": [
        ("address", "token0", True), ("address", "token1", True), ("uint24", "fee", True),
        ("int24", "tickSpacing", False), ("address", "pool", False)],
}
TOPIC0 = list(_EVENTS)
ABI = [{"anonymous": False, "type": "event", "name": sig.split("(")[0],
        "inputs": [{"indexed": ix, "name": n, "type": t} for t, n, ix in inputs]}
       for sig, inputs in _EVENTS.items()]
ADDRESS_BATCH = 100


class StreamsError(Exception):
    """A refused or failed API call: the method, path, status and Moralis's message."""


class StreamsAPI:
    def __init__(self, base_url: str, api_key: str, *, max_retries: int = 8,
                 timeout: float = 30.0, sleep=time.sleep, note=None):
        self.base = base_url.rstrip("/")
        self._key = api_key
        self.max_retries, self.timeout, self.sleep = max_retries, timeout, sleep
        self.note = note or (lambda msg: None)
        self.waited = 0.0

    def __repr__(self) -> str:          # never the key
        return f"<StreamsAPI {self.base}>"

    def call(self, method: str, path: str, body=None, query: dict | None = None):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=data, method=method, headers={
                "X-API-Key": self._key, "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {})})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    raw = r.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as e:
                text = e.read().decode(errors="replace")
                if e.code == 429 and attempt < self.max_retries:
                    wait = _retry_after(e.headers.get("Retry-After"), delay)
                    delay = min(delay * 2, 60.0)
                    self.note(f"{method} {path}: 429 rate-limited, retrying in {wait:.1f} s")
                    self.waited += wait
                    self.sleep(wait)
                    continue
                raise StreamsError(f"{method} {path}: HTTP {e.code}: {_message(text)}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise StreamsError(f"{method} {self.base}{path}: {reason}") from None
        raise StreamsError(f"{method} {path}: still rate-limited after {self.max_retries} retries")

    def _pages(self, path: str) -> list:
        out, cursor = [], None
        while True:
            q = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            doc = self.call("GET", path, query=q) or {}
            out += doc.get("result") or []
            cursor = doc.get("cursor")
            if not cursor:
                return out

    def streams(self) -> list[dict]:
        return self._pages("/streams/evm")

    def create(self, body: dict) -> dict:
        return self.call("PUT", "/streams/evm", body)

    def update(self, sid: str, body: dict) -> dict:
        return self.call("POST", f"/streams/evm/{urllib.parse.quote(sid)}", body)

    def addresses(self, sid: str) -> set[str]:
        rows = self._pages(f"/streams/evm/{urllib.parse.quote(sid)}/address")
        return {str(r.get("address", "")).lower() for r in rows}

    def add_addresses(self, sid: str, addresses: list[str]) -> None:
        for i in range(0, len(addresses), ADDRESS_BATCH):
            self.call("POST", f"/streams/evm/{urllib.parse.quote(sid)}/address",
                      {"address": addresses[i:i + ADDRESS_BATCH]})


def _retry_after(value: str | None, fallback: float) -> float:
    if value:
        try:
            return max(0.0, min(float(value), 600.0))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value).timestamp()
                return max(0.0, min(when - time.time(), 600.0))
            except (TypeError, ValueError):
                pass
    return fallback


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    except ValueError:
        pass
    return text[:200] or "(no body)"


@dataclass
class StreamPlan:
    chain: str
    tag: str
    body: dict
    addresses: list[str]
    stream_id: str | None = None
    action: str = "create"           # create | update | unchanged
    add: list[str] = field(default_factory=list)


def desired(engine: str, webhook_url: str, watched: dict[str, list[str]]) -> list[StreamPlan]:
    """One stream per chain watching `watched[chain]` (pools and factories)."""
    plans = []
    for chain, addrs in sorted(watched.items()):
        tag = f"syndicate-{engine}-{chain}"
        body = {"webhookUrl": webhook_url, "tag": tag,
                "description": f"syndicate {engine}: {chain} pool and factory events",
                "topic0": TOPIC0, "abi": ABI, "includeContractLogs": True,
                "includeNativeTxs": False, "includeInternalTxs": False,
                "chainIds": [hex(CHAIN_IDS[chain])]}
        uniq = sorted({a.lower() for a in addrs})
        plans.append(StreamPlan(chain, tag, body, uniq, add=list(uniq)))
    return plans


def compare(plans: list[StreamPlan], api: StreamsAPI | None) -> list[StreamPlan]:
    """Fill in each plan from the streams that exist (GETs only): none means create."""
    existing = {}
    if api is not None:
        for s in api.streams():
            existing.setdefault(s.get("tag"), s)
    for p in plans:
        s = existing.get(p.tag)
        if s is None:
            continue
        p.stream_id = s["id"]
        p.action = "unchanged" if all(_same(s.get(k), v) for k, v in p.body.items()) else "update"
        have = api.addresses(p.stream_id)
        p.add = [a for a in p.addresses if a not in have]
    return plans


def _same(a, b) -> bool:
    if isinstance(b, list) and isinstance(a, list) and all(isinstance(x, str) for x in a + b):
        return sorted(x.lower() for x in a) == sorted(x.lower() for x in b)
    return a == b


def apply(plans: list[StreamPlan], api: StreamsAPI) -> None:
    for p in plans:
        if p.action == "create":
            p.stream_id = api.create(p.body)["id"]
        elif p.action == "update":
            api.update(p.stream_id, p.body)
        if p.add:
            api.add_addresses(p.stream_id, p.add)
