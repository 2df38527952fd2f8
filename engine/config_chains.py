"""engine.toml's chains: every [chains.<name>] table, its submission policy, and the devnet
manifest that fills what a table leaves empty (endpoints, pools, factories).

Part of the config check (engine/config.py calls `networks` and `load_manifest` from `from_dict`):
`ck` is its checker, so an error names the key and its line as every other check does.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .config_schema import (BLOCK_TIMES, CHAIN_SCHEMA, CHAINS, ENDPOINT_SCHEMA, SUBMIT_SCHEMA,
                            expand_env)


def networks(ck, raw: dict, manifest: dict | None) -> dict[str, dict]:
    """Every chain's monitor settings: its [chains.<name>] table, with endpoints, pools and
    factories the table leaves empty taken from the manifest."""
    served = (manifest or {}).get("chains", {})
    out = {}
    for chain, cid in CHAINS.items():
        t = ck.table(f"chains.{chain}", expand_env(chain, raw.get(chain, {}), ck.fail, os.environ),
                     CHAIN_SCHEMA)
        m = served.get(chain)
        if m:
            if not t["rpc"]:
                t["rpc"] = [m["rpc_url"]]
            if not t["ws"] and str(m.get("ws_url", "")).startswith("ws"):
                t["ws"] = [m["ws_url"]]
            if not t["pools"] and not t["factories"]:
                t["pools"] = [p["address"] for p in m.get("pools", []) if isinstance(p, dict)
                              and "address" in p]
                t["factories"] = [d["factory"] for d in m.get("dexes", []) if isinstance(d, dict)
                                  and isinstance(d.get("factory"), str)]
            if t["chain_id"] is None and isinstance(m.get("chain_id"), int):
                t["chain_id"] = m["chain_id"]
        if t["chain_id"] is None:
            t["chain_id"] = cid
        if t["block_time"] is None:
            t["block_time"] = BLOCK_TIMES[chain]
        t["submit"] = submit(ck, chain, t["submit"])
        t["pools"] = [a.lower() for a in t["pools"]]
        t["factories"] = [a.lower() for a in t["factories"]]
        out[chain] = t
    return out


def submit(ck, chain: str, raw: dict) -> dict:
    """[chains.<chain>.submit]: its endpoints checked one by one, then as a policy (Polygon:
    public only after the private ones; timeboost only on Arbitrum)."""
    sec = f"chains.{chain}.submit"
    t = ck.table(sec, raw, SUBMIT_SCHEMA)
    eps = []
    for i, e in enumerate(t["endpoints"]):
        ep = ck.table(f"{sec}.endpoints[{i}]", e, ENDPOINT_SCHEMA)
        for need in ("kind", "url"):
            if ep[need] is None:
                raise ck.fail(sec, "endpoints", f"endpoint {i} has no {need!r}")
        if ep["kind"] == "timeboost" and not ep["auction"]:
            raise ck.fail(sec, "endpoints", f"endpoint {i}: timeboost needs the auction contract")
        eps.append(ep)
    kinds = [e["kind"] for e in eps]
    if chain != "arbitrum" and "timeboost" in kinds:
        raise ck.fail(sec, "endpoints", "timeboost is Arbitrum's express lane")
    if chain == "polygon" and "private" in kinds and "public" in kinds and \
            kinds.index("public") < max(i for i, k in enumerate(kinds) if k == "private"):
        raise ck.fail(sec, "endpoints", "a public endpoint may only follow the private ones "
                                        "(Polygon: private first, public as the fallback)")
    return {"endpoints": eps}


def load_manifest(path: Path, fail) -> dict:
    """The devnet manifest: {"chains": {name: {"chain_id", "rpc_url", "ws_url", ...}}}."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{path}: no such file (start the devnet with "
                   f"`syndicate devnet up --manifest {path}`)")
    except (OSError, ValueError) as e:
        raise fail(f"{path}: not a readable JSON manifest ({e})")
    chains = doc.get("chains") if isinstance(doc, dict) else None
    if not isinstance(chains, dict) or not chains:
        raise fail(f"{path}: no \"chains\" in this manifest")
    for name, c in chains.items():
        if name not in CHAINS:
            raise fail(f"{path}: unknown chain {name!r} (known: {', '.join(CHAINS)})")
        if not isinstance(c, dict) or not str(c.get("rpc_url", "")).startswith("http"):
            raise fail(f"{path}: chains.{name} has no http rpc_url")
    return doc
