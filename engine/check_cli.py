"""`syndicate check -c FILE`: validate the file as `run --check` does, then probe what it names.

    the file ─► config.load (exit 2 if invalid, nothing probed)
             ─► per chain with endpoints: each rpc URL  eth_chainId, head age
                                           each ws URL   handshake, eth_subscribe newHeads
                                           each [chains.<name>.submit] endpoint  eth_chainId
                 a monitor's chain with no endpoint: a failed row
             ─► [moralis] listeners, [metrics] listen: bindable, or already this engine's
             ─► one row per check; exit 0 all OK, 1 some failed

Probes run in parallel threads (a dead endpoint costs its timeout once, not once per row);
nothing is sent that changes anything (the probes in engine/chain/endpoint_check.py).
"""
from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from . import config as config_mod
from .chain.endpoint_check import Probe, probe_rpc, probe_submit, probe_ws, redact

MONITOR_KIND = "roles.monitor:ChainMonitor"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syndicate check", description=(
        "Validate engine.toml and probe every endpoint it names: chain id, head age, "
        "WebSocket subscription, submission endpoints, local listeners."))
    p.add_argument("-c", "--config", default="engine.toml", help="configuration file "
                   "(default: ./engine.toml)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.add_argument("--max-age", type=float, default=60.0, metavar="S",
                   help="a head block older than S seconds fails (default 60)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds each probe may wait for an answer (default 5)")
    return p


def plan(cfg: config_mod.EngineConfig, max_age: float, timeout: float) -> list[tuple]:
    """(what, target, callable -> [Probe]) for everything the configuration names; a row's
    check is `what` and the probe's own name ("base rpc head", "metrics listen")."""
    jobs = []
    monitored = {c for r in cfg.roles.values() if r.enabled and r.kind == MONITOR_KIND
                 for c in r.chains}
    for chain, net in cfg.networks.items():
        cid = net["chain_id"]
        for url in net["rpc"]:
            jobs.append((chain, redact(url), lambda u=url, c=cid: probe_rpc(u, c, max_age, timeout)))
        for url in net["ws"]:
            jobs.append((chain, redact(url), lambda u=url, c=cid: probe_ws(u, c, timeout)))
        for ep in (net.get("submit") or {}).get("endpoints", []):
            url = ep.get("url") if isinstance(ep, dict) else None
            if url:
                jobs.append((chain, f"{ep.get('kind') or '?'} {redact(url)}",
                             lambda u=url, c=cid: probe_submit(u, c, timeout)))
        if chain in monitored and not net["rpc"] and not net["ws"]:
            jobs.append((chain, "-", lambda c=chain: [Probe("endpoints", False,
                         f"a monitor watches {c} but [chains.{c}] names no rpc or ws endpoint "
                         "(and no [chains] manifest serves it)")]))
    if cfg.moralis:
        for listen in cfg.moralis["listen"]:
            jobs.append(("moralis", listen, lambda a=listen: [
                _listener(a, "/health", b'"inbox_depth"', "webhook receiver", timeout)]))
    if cfg.metrics["listen"]:
        a = cfg.metrics["listen"]
        mark = f'engine="{cfg.name}"'.encode()
        jobs.append(("metrics", a, lambda: [_listener(a, "/metrics", mark, "/metrics server",
                                                              timeout)]))
    return jobs


def _listener(listen: str, path: str, mark: bytes, what: str, timeout: float) -> Probe:
    """Free to bind, or already served by this engine (its answer carries `mark`)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0]
    except (OSError, ValueError) as e:
        return Probe("listen", False, f"cannot resolve {host!r}: {e}")
    with socket.socket(info[0], info[1]) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(info[4])
            return Probe("listen", True, "free")
        except OSError as e:
            why = e.strerror or str(e)
            if e.errno != errno.EADDRINUSE:     # not a port someone holds: nobody to ask
                return Probe("listen", False, f"cannot bind: {why}")
    try:
        with urllib.request.urlopen(f"http://{listen}{path}", timeout=timeout) as r:
            if mark in r.read(1 << 20):
                return Probe("listen", True, f"in use by this engine's {what} (running)")
    except OSError:
        pass
    return Probe("listen", False, f"cannot bind: {why} (and it is not this engine's {what})")


def run_checks(jobs: list[tuple]) -> list[dict]:
    def one(job):
        name, target, fn = job
        try:
            probes = fn()
        except Exception as e:   # a probe bug is a failed row, not a crash of the command
            probes = [Probe("probe", False, f"probe failed: {e!r}"[:200])]
        return [{"check": f"{name} {p.check}", "target": target, "ok": p.ok,
                 "detail": p.detail} for p in probes]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return [row for rows in pool.map(one, jobs) for row in rows]


def render(path, rows: list[dict]) -> str:
    w1 = max([len(r["check"]) for r in rows] + [5])
    w2 = max([len(r["target"]) for r in rows] + [6])
    out = [f"{'CHECK':<{w1}}  {'TARGET':<{w2}}  RESULT"]
    for r in rows:
        out.append(f"{r['check']:<{w1}}  {r['target']:<{w2}}  "
                   f"{'OK' if r['ok'] else 'FAIL'}  {r['detail']}")
    bad = sum(not r["ok"] for r in rows)
    out.append(f"{path}: {len(rows) - bad} of {len(rows)} checks OK" if rows else
               f"{path}: valid; it names no endpoint or listener to probe")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.max_age <= 0 or args.timeout <= 0:
        print("syndicate check: --max-age and --timeout must be > 0", file=sys.stderr)
        return 2
    from .core.role import describe_kind   # the same validation as `run --check`
    try:
        cfg = config_mod.load(args.config, describe=describe_kind)
    except config_mod.ConfigError as e:
        if args.json:
            print(json.dumps({"file": str(args.config), "valid": False, "error": str(e)}))
        print(f"syndicate: configuration error: {e}", file=sys.stderr)
        return 2
    rows = run_checks(plan(cfg, args.max_age, args.timeout))
    ok = all(r["ok"] for r in rows)
    if args.json:
        print(json.dumps({"file": str(cfg.path), "valid": True, "ok": ok, "checks": rows},
                         indent=1))
    else:
        print(render(cfg.path, rows))
    return 0 if ok else 1


main_check = main
