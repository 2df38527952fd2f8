"""The replay's input: recorded logs in eth_getLogs shape, per chain, in block order.

Formats, told apart by content (not by the file's name):
    JSON array      `[{log}, ...]`                      (eth_getLogs' `result`)
    JSON lines      one `{log}` a line                  (ethereum-etl's expected_logs.json)
    CSV             demeter-fetch's raw exports: `block_number, block_timestamp,
                    transaction_hash, pool_log_index|log_index, pool_topics|topics,
                    pool_data|data` (../shared/data/chain/SOURCES.md); the pool address is the
                    `0x…` (40 hex digits) in the file name, as demeter-fetch names its files
A log's keys: `address, topics, data, blockNumber, blockHash, transactionHash, logIndex`
(camelCase or ethereum-etl's snake_case), optional `blockTimestamp|block_timestamp|timestamp`
(pacing for --speed 1x/10x) and `chain`.  The chain is `--chain` when given (it wins), else the
log's `chain`, else the file name's first word when it names an engine chain
(`polygon-0x45dd….raw.csv`).  A CSV has no block hashes: a block's hash is made from its number
(`0x` + the number in 64 hex digits), stated in the summary.

Bad input: a line or row that cannot be a log (not JSON, a key missing, a field not hex, data
of a known event that does not decode) is named (file, line, what) and skipped; the count is in
the summary.  `strict=True` stops at the first one (BadInput).  A file that cannot be read, is
of no format above, or yields no log at all is BadInput.

Pools: each pool is seeded from the first state a log of it reveals (a V2 Sync: reserves; a V3
Swap or Initialize: sqrtPriceX96, liquidity, tick), positioned just after that log (later logs
of the same block apply).  Its tokens and fee are not in its logs: a pool-state file
(`--pools`, `read_pool_file`) gives them, and may give a state at a block; without one the
tokens are placeholders made from the pool's address (so no cycle joins two such pools) and the
fee is assumed (V2 30 bps, V3 3000 = 0.3 %).  A V3 day starts mid-history: every tick its Mint
and Burn logs touch is granted a large liquidityGross so a burn of an older position passes the
book's check (the tick table then follows the day's mints and burns exactly from there).
"""
from __future__ import annotations

import ast
import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from engine.arb import events as ev
from engine.config import CHAINS

_ADDR = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"^0x[0-9a-fA-F]*$")
GRANTED_GROSS = 1 << 127
SHOWN_ERRORS = 20          # bad lines printed one by one; the rest only counted


class BadInput(Exception):
    """A replay input that cannot be used; the message names the file and what is wrong."""


@dataclass
class Replay:
    logs: dict[str, list[dict]] = field(default_factory=dict)     # chain -> logs, block order
    pools: dict[str, dict[str, dict]] = field(default_factory=dict)   # chain -> address -> seed
    bad: list[str] = field(default_factory=list)                  # "file:line: what"
    files: list[str] = field(default_factory=list)
    synthetic_hashes: bool = False

    def count(self) -> int:
        return sum(len(v) for v in self.logs.values())


def _alias(d: dict, *names):
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return None


def _int_field(v, what: str) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{what} is a boolean")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 16) if s.startswith(("0x", "0X")) else int(float(s)) if "." in s else int(s)
        except ValueError:
            pass
    raise ValueError(f"{what} is not a number: {v!r}")


def _hex_field(v, what: str) -> str:
    if not isinstance(v, str) or not _HEX.match(v):
        raise ValueError(f"{what} is not 0x-hex: {str(v)[:40]!r}")
    return v.lower()


def _timestamp(v) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    s = str(v).strip()
    try:
        return float(int(s, 16)) if s.startswith("0x") else float(s)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"timestamp not understood: {s[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def normalise(raw: dict, *, address: str | None = None) -> dict:
    """One log in eth_getLogs shape (lower-case hex, ints for numbers); ValueError naming the
    field that is wrong.  A known pool event whose data does not decode is refused here."""
    if not isinstance(raw, dict):
        raise ValueError(f"not an object: {type(raw).__name__}")
    out: dict = {}
    a = address or _alias(raw, "address")
    if a is None:
        raise ValueError("no address")
    out["address"] = _hex_field(a, "address")
    if len(out["address"]) != 42:
        raise ValueError(f"address is not 20 bytes: {out['address']!r}")
    topics = _alias(raw, "topics")
    if not isinstance(topics, list):
        raise ValueError("topics is not a list")
    out["topics"] = [_hex_field(t, "a topic") for t in topics]
    out["data"] = _hex_field(_alias(raw, "data") if _alias(raw, "data") is not None else "0x", "data")
    for key, names in (("blockNumber", ("blockNumber", "block_number")),
                       ("logIndex", ("logIndex", "log_index"))):
        v = _alias(raw, *names)
        if v is None:
            raise ValueError(f"no {key}")
        out[key] = _int_field(v, key)
    tx = _alias(raw, "transactionHash", "transaction_hash")
    if tx is None:
        raise ValueError("no transactionHash")
    out["transactionHash"] = _hex_field(tx, "transactionHash")
    bh = _alias(raw, "blockHash", "block_hash")
    out["blockHash"] = _hex_field(bh, "blockHash") if bh is not None else None
    out["t"] = _timestamp(_alias(raw, "blockTimestamp", "block_timestamp", "timestamp", "timeStamp"))
    if raw.get("removed"):
        out["removed"] = True
    if raw.get("chain") is not None:
        out["chain"] = str(raw["chain"])
    ev.decode(out["topics"], out["data"])      # ValueError: a known event, malformed
    return out


def _chain_of_name(path: Path) -> str | None:
    word = path.name.split("-", 1)[0].split("_", 1)[0].lower()
    return word if word in CHAINS else None


def _read_json(path: Path, text: str):
    """(line number, raw log or the error) for a JSON array or JSON lines."""
    if text.lstrip().startswith("["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise BadInput(f"{path}: not a JSON array: {e}") from None
        for i, item in enumerate(doc, 1):
            yield f"item {i}", item
        return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield f"line {n}", ValueError(f"not JSON: {e}")


def _read_csv(path: Path, text: str):
    rows = csv.DictReader(text.splitlines())
    cols = set(rows.fieldnames or ())
    topics_col = "pool_topics" if "pool_topics" in cols else "topics" if "topics" in cols else None
    data_col = "pool_data" if "pool_data" in cols else "data" if "data" in cols else None
    index_col = "pool_log_index" if "pool_log_index" in cols else "log_index" if "log_index" in cols else None
    need = {"block_number", "transaction_hash"}
    if not (topics_col and data_col and index_col and need <= cols):
        raise BadInput(f"{path}: not a log CSV: columns {sorted(cols)} (a raw export needs "
                       "block_number, transaction_hash, [pool_]log_index, [pool_]topics, "
                       "[pool_]data; see README, 'Replay')")
    m = _ADDR.search(path.name) if "address" not in cols else None
    if "address" not in cols and m is None:
        raise BadInput(f"{path}: a CSV without an address column needs the pool address "
                       "(0x + 40 hex digits) in its file name")
    for n, row in enumerate(rows, 2):
        try:
            topics = ast.literal_eval(row[topics_col] or "[]")
        except (ValueError, SyntaxError):
            yield f"line {n}", ValueError(f"{topics_col} is not a list: {row[topics_col][:40]!r}")
            continue
        yield f"line {n}", {"address": row.get("address") or m.group(0), "topics": topics,
                            "data": row[data_col], "blockNumber": row["block_number"],
                            "logIndex": row[index_col], "transactionHash": row["transaction_hash"],
                            "block_timestamp": row.get("block_timestamp")}


def read_files(paths: list[str], chain: str | None = None, *, strict: bool = False) -> Replay:
    out = Replay()
    for p in paths:
        path = Path(p)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{path}: cannot read: {e}") from None
        out.files.append(str(path))
        head = text.lstrip()[:1]
        items = _read_json(path, text) if head in ("[", "{") else _read_csv(path, text)
        n_before = out.count()
        for where, raw in items:
            try:
                if isinstance(raw, Exception):
                    raise raw
                log = normalise(raw)
                c = chain or log.pop("chain", None) or _chain_of_name(path)
                log.pop("chain", None)
                if c is None:
                    raise ValueError("no chain: give --chain, or a `chain` key")
                if c not in CHAINS:
                    raise ValueError(f"unknown chain {c!r} (known: {', '.join(CHAINS)}; "
                                     "--chain feeds a file into one of them)")
            except ValueError as e:
                msg = f"{path}:{where}: {e}"
                if strict:
                    raise BadInput(msg) from None
                out.bad.append(msg)
                continue
            if log["blockHash"] is None:
                log["blockHash"] = "0x" + format(log["blockNumber"], "064x")
                out.synthetic_hashes = True
            out.logs.setdefault(c, []).append(log)
        if out.count() == n_before:
            raise BadInput(f"{path}: no log in it" + (f" ({len(out.bad)} bad lines, the first: "
                                                     f"{out.bad[0]})" if out.bad else ""))
    for logs in out.logs.values():
        logs.sort(key=lambda g: (g["blockNumber"], g["logIndex"]))
    return out


# ------------------------------------------------------------------------------------- pools
def _placeholder(address: str, which: str) -> str:
    return "0x" + hashlib.sha256(f"{address}:{which}".encode()).hexdigest()[:40]


def read_pool_file(path: str) -> dict[str, dict]:
    """address -> {kind, token0, token1, fee | fee_bps, tick_spacing, [state], [block], [chain]}.
    A JSON list of such objects (or {"pools": [...]}); BadInput names the entry that is wrong."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise BadInput(f"{path}: cannot read the pool-state file: {e}") from None
    items = doc.get("pools") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise BadInput(f"{path}: a pool-state file is a JSON list of pools (or {{\"pools\": [...]}})")
    out = {}
    for i, p in enumerate(items, 1):
        try:
            if not isinstance(p, dict):
                raise ValueError("not an object")
            a = _hex_field(p.get("address"), "address")
            kind = p.get("kind")
            if kind not in ("v2", "v3"):
                raise ValueError(f"kind must be 'v2' or 'v3' (got {kind!r})")
            for t in ("token0", "token1"):
                _hex_field(p.get(t), t)
            out[a] = {**p, "address": a, "token0": p["token0"].lower(), "token1": p["token1"].lower()}
        except ValueError as e:
            raise BadInput(f"{path}: pool {i}: {e}") from None
    return out


def seed_pools(replay: Replay, known: dict[str, dict] | None = None) -> None:
    """Fill `replay.pools` (module text): per chain, every pool with a revealed state."""
    known = known or {}
    for chain, logs in replay.logs.items():
        seeds: dict[str, dict] = {}
        ticks: dict[str, set] = {}
        for log in logs:
            a, topics = log["address"], log["topics"]
            t0 = topics[0] if topics else None
            if t0 in (ev.V3_MINT_TOPIC, ev.V3_BURN_TOPIC) and len(topics) == 4:
                ticks.setdefault(a, set()).update(ev._signed(int(t, 16), 256) for t in topics[2:])
            if a in seeds:
                continue
            k = known.get(a, {})
            if k.get("state") is not None:        # the file gives a state at a block
                seeds[a] = {**k, "block": int(k.get("block", 0)), "log_index": -1}
                continue
            e = ev.decode(topics, log["data"]) if t0 else None
            if isinstance(e, ev.V2Sync):
                state = {"reserve0": str(e.reserve0), "reserve1": str(e.reserve1)}
                kind = "v2"
            elif isinstance(e, (ev.V3Swap, ev.V3Initialize)):
                liq = e.liquidity if isinstance(e, ev.V3Swap) else 0
                state = {"sqrt_price_x96": str(e.sqrt_price_x96), "liquidity": str(liq),
                         "tick": e.tick}
                kind = "v3"
            else:
                continue
            if k and k.get("kind") != kind:
                raise BadInput(f"pool {a}: the pool-state file says {k.get('kind')}, its logs "
                               f"are {kind}")
            seeds[a] = {"address": a, "kind": kind,
                        "token0": k.get("token0") or _placeholder(a, "token0"),
                        "token1": k.get("token1") or _placeholder(a, "token1"),
                        "fee_bps": int(k.get("fee_bps", 30)), "fee": int(k.get("fee", 3000)),
                        "tick_spacing": int(k.get("tick_spacing", 60)), "dex": k.get("dex", ""),
                        "state": state, "block": log["blockNumber"],
                        "log_index": log["logIndex"], "placeholder_tokens": not k}
        for a, s in seeds.items():
            if s["kind"] == "v3":
                s["gross"] = {str(t): str(GRANTED_GROSS) for t in sorted(ticks.get(a, ()))}
        replay.pools[chain] = seeds


# --------------------------------------------------------------------- a manifest and its node
def manifest_pools(chain_manifest: dict) -> dict[str, dict]:
    """A manifest chain entry's pools as pool-file entries (tokens, fees, tick spacing)."""
    out = {}
    for p in chain_manifest.get("pools") or ():
        a = str(p.get("address", "")).lower()
        if not _ADDR.fullmatch(a) or p.get("kind") not in ("v2", "v3"):
            continue
        e = {"address": a, "kind": p["kind"], "token0": str(p["token0"]).lower(),
             "token1": str(p["token1"]).lower(), "dex": p.get("dex", "")}
        if p["kind"] == "v2":
            e["fee_bps"] = int(p.get("fee") or 30)
        else:
            e.update(fee=int(p["fee"]), tick_spacing=int(p["tick_spacing"]))
        out[a] = e
    return out


def seed_from_node(replay: Replay, chain: str, chain_manifest: dict) -> int:
    """Every pool of the manifest read from its node just before the input's first block
    (engine/chain/pools.load_pools: the chain monitor's loader, V3 tick tables included), so
    pools the logs never touch are in the graph too; the logs then apply from that block on.
    Returns the block read; BadInput naming the node when it cannot be read."""
    from engine.chain.pools import load_pools, specs_from_manifest
    from engine.chain.replica import info_of, state_of
    from engine.chain.rpc import RpcClient, RpcError
    from engine.arb.v3 import V3Pool
    logs = replay.logs.get(chain) or []
    url = chain_manifest.get("rpc_url")
    if not logs or not url:
        return -1
    block = max(0, logs[0]["blockNumber"] - 1)
    rpc = RpcClient(url, timeout=30.0)
    try:
        got = load_pools(rpc, specs_from_manifest(chain_manifest), block)
    except (RpcError, OSError, ValueError) as e:
        raise BadInput(f"{chain}: cannot read the manifest's pools from {url} at block {block}: "
                       f"{e}") from None
    finally:
        rpc.close()
    seeds = replay.pools.setdefault(chain, {})
    for a, p in got.pools.items():
        s = {"address": a, **info_of(p), "state": state_of(p), "block": block, "log_index": -1,
             "placeholder_tokens": False}
        if isinstance(p, V3Pool):
            s["ticks"] = [[t, str(n)] for t, n in sorted(p.ticks.items())]
            s["gross"] = {str(t): str(g) for t, g in (got.gross.get(a) or {}).items()}
        seeds[a] = s                  # the node's state wins over a state the logs revealed
    return block
