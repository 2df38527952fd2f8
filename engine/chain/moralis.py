"""Moralis Streams webhook bodies: the signature, the shape, and the logs inside (no I/O).

    raw body bytes ──► signature_ok(body, secret, x-signature)   keccak-256(body ‖ secret), hex
                   ──► parse(body) ─► Delivery                    BodyError names field + fault
                                       .test   the empty test webhook Moralis sends when a
                                               stream is created or updated (logs [], block.number "")
                                       .chain  arbitrum | base | polygon | None (another chain)
                                       .logs   eth_getLogs-shaped dicts, ready for a PoolBook

What Moralis sends (../shared/data/moralis, ARCHITECTURE.md): `confirmed` (bool), `chainId` (hex
string), `streamId`, `tag`, `retries` (number), `block{number,hash,timestamp}` (decimal strings),
`logs[]` with `logIndex` (decimal string), `transactionHash`, `address`, `data` and the topics as
four separate fields `topic0`..`topic3` (null when unused).  Other fields (`txs`, `abi`,
`erc20Transfers`, newer additions like `triggered_by`) are not ours to judge and are ignored.

A log becomes exactly what a node's `eth_getLogs` / `eth_subscribe("logs")` returns over JSON-RPC
(hex quantities, lower-case hex data), so the node path and the webhook path feed one PoolBook
and meet in its (block hash, tx hash, log index) de-duplication:

    {"address", "topics": [topic0, …], "data", "blockNumber": "0x…", "blockHash",
     "transactionHash", "logIndex": "0x…", "removed": false}

Moralis has no `transactionIndex` in a log, so there is none here.

Chains: the chainId of a delivery names the chain (0xa4b1 arbitrum, 0x2105 base, 0x89 polygon).
A delivery for any other chain is *valid* (Moralis serves ~30 chains and a stream may list one by
mistake): `chain` is None and the receiver records it and hands nothing on.  Refusing it with a
4xx would only make Moralis retry it for two days and count the stream as failing.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

import orjson
from eth_utils import keccak

CHAINS_BY_ID = {0xa4b1: "arbitrum", 0x2105: "base", 0x89: "polygon"}
CHAIN_IDS = {name: cid for cid, name in CHAINS_BY_ID.items()}

_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEXDATA = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
_QUANTITY = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
_DECIMAL = re.compile(r"^[0-9]{1,20}$")
_SIG = re.compile(r"^(?:0[xX])?([0-9a-fA-F]{64})$")
TOPICS = ("topic0", "topic1", "topic2", "topic3")


class BodyError(ValueError):
    """A body that is not a Streams delivery: `where` is the field (e.g. "logs[3].address")."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.where, self.what = where, what


def signature(body: bytes, secret: str | bytes) -> str:
    """What Moralis puts in `x-signature`: keccak-256 of the body followed by the secret."""
    s = secret.encode() if isinstance(secret, str) else secret
    return "0x" + keccak(bytes(body) + s).hex()


def signature_ok(body: bytes, secret: str | bytes, header: str | None) -> bool:
    """Whether `header` (hex, with or without 0x, any case) signs `body` with `secret`.
    The comparison takes the same time wherever the first wrong digit is."""
    if not header or not secret:
        return False
    m = _SIG.match(header.strip())
    if m is None:
        return False
    return hmac.compare_digest(m.group(1).lower().encode(), signature(body, secret)[2:].encode())


@dataclass(frozen=True)
class Delivery:
    test: bool
    confirmed: bool
    chain_id: int | None
    chain: str | None
    stream_id: str
    tag: str
    retries: int
    block_number: int | None
    block_hash: str
    block_timestamp: int | None
    logs: tuple[dict, ...]


def _field(obj: dict, key: str, typ, where: str):
    if key not in obj:
        raise BodyError(f"{where}{key}", "missing")
    v = obj[key]
    if typ is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif typ is None:
        return v
    else:
        ok = isinstance(v, typ)
    if not ok:
        want = {str: "a string", bool: "true or false", int: "an integer", list: "a list",
                dict: "an object"}[typ]
        raise BodyError(f"{where}{key}", f"must be {want}, not {_kind(v)}")
    return v


def _kind(v) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
            str: "a string", list: "a list", dict: "an object"}.get(type(v), type(v).__name__)


def _match(pattern: re.Pattern, value: str, where: str, what: str) -> str:
    if not pattern.match(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise BodyError(where, f"{what}, got {shown!r}")
    return value


def parse(body: bytes | str | dict) -> Delivery:
    """A Streams body (raw bytes, text or already decoded) as a Delivery; BodyError otherwise."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BodyError("body", f"not JSON ({e})") from None
    else:
        doc = body
    if not isinstance(doc, dict):
        raise BodyError("body", f"must be a JSON object, not {_kind(doc)}")
    confirmed = _field(doc, "confirmed", bool, "")
    chain_hex = _field(doc, "chainId", str, "")
    stream_id = _field(doc, "streamId", str, "")
    tag = _field(doc, "tag", str, "")
    retries = _field(doc, "retries", int, "")
    if retries < 0:
        raise BodyError("retries", f"must be >= 0, got {retries}")
    block = _field(doc, "block", dict, "")
    number = _field(block, "number", str, "block.")
    bhash = _field(block, "hash", str, "block.")
    stamp = _field(block, "timestamp", str, "block.")
    raw_logs = _field(doc, "logs", list, "")
    if number == "" and not raw_logs:
        # The test webhook: every field empty by design.  Nothing to hand on.
        return Delivery(True, confirmed, None, None, stream_id, tag, retries, None, "", None, ())
    chain_id = int(_match(_QUANTITY, chain_hex, "chainId", "must be a hex chain id like 0xa4b1"),
                   16)
    block_number = int(_match(_DECIMAL, number, "block.number", "must be a decimal string"))
    _match(_HASH, bhash, "block.hash", "must be a 32-byte 0x-hex hash")
    ts = int(_match(_DECIMAL, stamp, "block.timestamp", "must be a decimal string")) \
        if stamp else None
    bhash = bhash.lower()
    block_q = hex(block_number)
    logs = tuple(_log(item, f"logs[{i}]", bhash, block_q) for i, item in enumerate(raw_logs))
    seen: dict[tuple, int] = {}
    for i, lg in enumerate(logs):
        k = (lg["transactionHash"], lg["logIndex"])
        if k in seen:
            raise BodyError(f"logs[{i}]", f"same transactionHash and logIndex as logs[{seen[k]}]")
        seen[k] = i
    return Delivery(False, confirmed, chain_id, CHAINS_BY_ID.get(chain_id), stream_id, tag,
                    retries, block_number, bhash, ts, logs)


def _log(item, where: str, block_hash: str, block_q: str) -> dict:
    if not isinstance(item, dict):
        raise BodyError(where, f"must be an object, not {_kind(item)}")
    w = where + "."
    index = int(_match(_DECIMAL, _field(item, "logIndex", str, w), w + "logIndex",
                       "must be a decimal string"))
    tx = _match(_HASH, _field(item, "transactionHash", str, w), w + "transactionHash",
                "must be a 32-byte 0x-hex hash")
    address = _match(_ADDRESS, _field(item, "address", str, w), w + "address",
                     "must be a 20-byte 0x-hex address")
    data = _match(_HEXDATA, _field(item, "data", str, w), w + "data",
                  "must be 0x-hex bytes (an even number of digits)")
    topics = []
    gap = None
    for name in TOPICS:
        t = item.get(name)
        if t is None:
            gap = gap or name
            continue
        if not isinstance(t, str):
            raise BodyError(w + name, f"must be a string or null, not {_kind(t)}")
        _match(_HASH, t, w + name, "must be a 32-byte 0x-hex topic")
        if gap:
            raise BodyError(w + name, f"is set although {gap} is null (topics are positional)")
        topics.append(t.lower())
    return {"address": address.lower(), "topics": topics, "data": data.lower(),
            "blockNumber": block_q, "blockHash": block_hash, "transactionHash": tx.lower(),
            "logIndex": hex(index), "removed": False}


def log_key(chain: str, log: dict) -> tuple[str, str, str, int]:
    """The dedup key every path shares: (chain, block hash, tx hash, log index)."""
    return (chain, log["blockHash"], log["transactionHash"], int(log["logIndex"], 16))
