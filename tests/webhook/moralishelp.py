"""Moralis's side, stood in for: its documented bodies (read from ../shared/data/moralis at run
time) and its signature, computed here independently of engine/chain/moralis.py (pycryptodome's
keccak, not eth_utils), so a wrong signature scheme in the product cannot pass its own test."""
from __future__ import annotations

import json
from pathlib import Path

from Crypto.Hash import keccak

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAYLOADS = SHARED / "moralis" / "payloads"
POLYGON_LOGS = SHARED / "chain" / "polygon-etl_block_23887160" / "expected_logs.json"


def sign(body: bytes, secret: str) -> str:
    h = keccak.new(digest_bits=256)
    h.update(body + secret.encode())
    return "0x" + h.hexdigest()


def payload(prefix: str) -> bytes:
    """The raw bytes of payloads/<prefix>*.json (exactly as stored)."""
    [path] = sorted(PAYLOADS.glob(f"{prefix}*.json"))
    return path.read_bytes()


def all_payloads() -> list[Path]:
    return sorted(PAYLOADS.glob("*.json"))


def polygon_logs() -> list[dict]:
    """Every real log of Polygon block 23887160 (polygon-etl's export)."""
    return [json.loads(line) for line in POLYGON_LOGS.read_text().splitlines() if line.strip()]


def polygon_body(confirmed: bool, logs: list[dict] | None = None, retries: int = 0,
                 chain_id: str = "0x89") -> bytes:
    """A Streams delivery in the shape of payload 05 (a contract-event stream) carrying real
    Polygon logs: SOURCES.md found no Moralis body with a Polygon log, so the shape is Moralis's
    and the logs are the chain's."""
    doc = json.loads(payload("05"))
    logs = polygon_logs() if logs is None else logs
    first = logs[0] if logs else polygon_logs()[0]
    doc.update(confirmed=confirmed, chainId=chain_id, retries=retries, abi=[], tag="syndicate-polygon",
               streamId="0b6a3f5e-4a2b-4c1d-9e8f-7a6b5c4d3e2f")
    doc["block"] = {"number": str(first["block_number"]), "hash": first["block_hash"],
                    "timestamp": str(first["block_timestamp"])}
    doc["logs"] = [{"logIndex": str(lg["log_index"]), "transactionHash": lg["transaction_hash"],
                    "address": lg["address"], "data": lg["data"],
                    **{f"topic{i}": (lg["topics"][i] if i < len(lg["topics"]) else None)
                       for i in range(4)}} for lg in logs]
    return json.dumps(doc).encode()


def _h(text: str) -> str:
    h = keccak.new(digest_bits=256)
    h.update(text.encode())
    return "0x" + h.hexdigest()


def numbered_body(i: int, confirmed: bool, chain_id: str = "0x89", logs: int = 1) -> bytes:
    """Delivery number i: `logs` real Polygon logs (data, topics, address) in a block and
    transaction of their own, so every i names different (block hash, tx, log index) keys."""
    src = polygon_logs()
    block = 40_000_000 + i
    out = []
    for k in range(logs):
        lg = dict(src[(i + k) % len(src)])
        lg.update(block_number=block, block_hash=_h(f"block-{chain_id}-{block}"),
                  transaction_hash=_h(f"tx-{chain_id}-{i}"), log_index=k)
        out.append(lg)
    return polygon_body(confirmed, out, chain_id=chain_id)


def keys_of(body: bytes) -> set[tuple]:
    """The dedup keys of a body's logs, computed here from the JSON."""
    doc = json.loads(body)
    chain = {"0x89": "polygon", "0xa4b1": "arbitrum", "0x2105": "base"}[doc["chainId"]]
    return {(chain, doc["block"]["hash"].lower(), lg["transactionHash"].lower(),
             int(lg["logIndex"])) for lg in doc["logs"]}
