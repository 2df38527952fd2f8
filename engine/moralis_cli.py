"""`syndicate moralis sync [-c engine.toml] [--dry-run]`: make Moralis Streams watch what the
engine trades: one stream per chain for its pools and factories (engine/chain/streams.py).

What is watched comes from the `[chains] manifest` (the devnet's, scripts/devnet.py: each
chain's `pools[].address` and `dexes[].factory`); when engine.toml grows `[chains.<name>] pools`
and `factories` (the chain-ingress issue), those will be the source instead.  `--dry-run` shows
the plan and changes nothing (it only GETs, and needs no key when none is set).  The API key is
read from the variable `[moralis] api_key_env` names; it is never printed.

Exit codes: 0 done (or planned), 1 the API refused or failed (the message says which call),
2 bad input (no [moralis], no webhook_url, no manifest, no key), nothing sent.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import config as config_mod
from .chain import streams
from .chain.moralis import CHAIN_IDS


def watched(cfg) -> dict[str, list[str]]:
    """{chain: [pool and factory addresses]} from the manifest, for our chains."""
    out = {}
    for chain, c in ((cfg.manifest or {}).get("chains") or {}).items():
        if chain not in CHAIN_IDS:
            continue
        addrs = [p["address"] for p in c.get("pools") or [] if p.get("address")]
        addrs += [d["factory"] for d in c.get("dexes") or [] if d.get("factory")]
        if addrs:
            out[chain] = addrs
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="syndicate moralis",
                                 description="manage the Moralis Streams that feed the receiver")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("sync", help="create or update one stream per chain (idempotent)")
    sp.add_argument("-c", "--config", default="engine.toml")
    sp.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    args = ap.parse_args(argv)
    err = lambda msg: print(f"syndicate moralis: {msg}", file=sys.stderr)   # noqa: E731
    try:
        cfg = config_mod.load(args.config, check_env=False)
    except config_mod.ConfigError as e:
        err(f"configuration error: {e}")
        return 2
    m = cfg.moralis
    if m is None:
        err(f"{cfg.path}: no [moralis] section: nothing to sync")
        return 2
    if not m["webhook_url"]:
        err(f"{cfg.path}: moralis.webhook_url is empty: set the public HTTPS URL Moralis must "
            f"POST to (the reverse proxy in front of {m['listen'][0]}{m['path']})")
        return 2
    want = watched(cfg)
    if not want:
        err(f"{cfg.path}: no pools or factories to watch: [chains] manifest names none "
            "(start the devnet with --manifest, or name the manifest)")
        return 2
    key = os.environ.get(m["api_key_env"], "")
    if not key and not args.dry_run:
        err(f"environment variable {m['api_key_env']} is not set (moralis.api_key_env): it "
            "must hold the Moralis API key")
        return 2
    api = streams.StreamsAPI(m["api_url"], key, note=print) if key else None
    plans = streams.desired(cfg.name, m["webhook_url"], want)
    try:
        streams.compare(plans, api)
        if api is None:
            print(f"(no {m['api_key_env']}: planned as if no stream existed)")
        for p in plans:
            print(f"{p.chain}: {p.action} stream {p.tag}"
                  f"{' (' + p.stream_id + ')' if p.stream_id else ''}; "
                  f"{len(p.addresses)} addresses watched, {len(p.add)} to add")
        if args.dry_run:
            print("dry run: nothing changed")
            return 0
        streams.apply(plans, api)
    except streams.StreamsError as e:
        err(f"{m['api_url']}: {e}")
        return 1
    for p in plans:
        print(f"{p.chain}: stream {p.stream_id} in sync ({len(p.addresses)} addresses)")
    if api.waited:
        print(f"rate-limited: waited {api.waited:.1f} s in all")
    return 0
