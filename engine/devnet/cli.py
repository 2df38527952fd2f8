"""`syndicate devnet up|traffic|down`: the devnet from the command line.

    syndicate devnet up [--chains arbitrum,base,polygon] [--manifest PATH] [--base-port N]
                        [--seed N] [--traffic RATE] [--rival SHARE] [--no-cache]
        Starts one anvil per chain on 127.0.0.1 (ports base-port, base-port+1, ... or free
        ones), deploys everything, writes the manifest (default var/devnet/manifest.json) and
        stays in the foreground.  Ctrl-C, SIGTERM or SIGHUP stops every anvil; so does
        `syndicate devnet down`.  With --traffic it also runs the traffic generator.
    syndicate devnet traffic --manifest PATH [--rate R] [--big-every K] [--duration S] [--seed N]
                             [--rival SHARE]
        Random swaps against a running devnet: R swaps per second over all chains; every K-th
        swap (on average) is big enough to move its pool's price by at least 0.5 %.
        --rival SHARE adds a competing searcher (engine/devnet/rival.py) that back-runs big
        swaps at once, from its own account, on SHARE (0-1] of each chain's pools.
    syndicate devnet down [--manifest PATH]
        Stops the `up` process named in the manifest (SIGTERM); it stops its anvils.

Exit codes: 0 done, 1 `down` found no running devnet, 2 bad input (nothing started).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .anvil import ROOT
from .deploy import CHAINS
from .devnet import Devnet
from .traffic import SwapRecord, Traffic

DEFAULT_MANIFEST = ROOT / "var" / "devnet" / "manifest.json"
DESCRIPTION = "A local three-chain devnet: one anvil per chain id, real Uniswap contracts, seeded pools."


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGHUP so that every `finally` runs."""


def _raise_stop(signum, frame):  # the only job of this handler: unwind the main thread
    raise _Stop(signal.Signals(signum).name)


def _print_swap(rec: SwapRecord) -> None:
    tag = "BIG " if rec.big else ""
    print(f"{rec.chain:<9} {rec.dex:<13} {rec.pair:<16} {rec.pool} {tag}in={rec.amount_in} "
          f"move={rec.price_move * 100:+.3f}%", flush=True)
    if rec.rival:
        r = rec.rival
        print(f"{rec.chain:<9} rival back-run {r['tx']} "
              + (f"took {r['profit']} of {r['token']}" if r["status"] == 1 else "reverted"),
              flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="syndicate devnet", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the devnet in the foreground")
    up.add_argument("--chains", default="arbitrum,base,polygon")
    up.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    up.add_argument("--base-port", type=int, default=None)
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--no-cache", action="store_true", help="deploy even if a cached state exists")
    up.add_argument("--traffic", type=float, default=0.0, metavar="RATE",
                    help="also run the traffic generator at RATE swaps/s")
    up.add_argument("--rival", type=float, default=0.0, metavar="SHARE",
                    help="with --traffic: a rival searcher back-runs big swaps on SHARE of the pools")
    tr = sub.add_parser("traffic", help="random swaps against a running devnet")
    tr.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    tr.add_argument("--rate", type=float, default=2.0)
    tr.add_argument("--big-every", type=int, default=20)
    tr.add_argument("--duration", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--rival", type=float, default=0.0, metavar="SHARE",
                    help="a rival searcher back-runs big swaps on SHARE (0-1] of the pools")
    dn = sub.add_parser("down", help="stop the devnet started by `up`")
    dn.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2

    if args.cmd == "up":
        chains = [c.strip() for c in args.chains.split(",") if c.strip()]
        bad = [c for c in chains if c not in CHAINS]
        if bad or not chains:
            print(f"devnet: --chains: unknown {bad or chains}; known: {','.join(CHAINS)}", file=sys.stderr)
            return 2
        if not 0 <= args.rival <= 1:
            print(f"devnet: --rival {args.rival}: a share of the pools, 0 to 1", file=sys.stderr)
            return 2
        if args.base_port is not None and not (1024 <= args.base_port <= 65535 - len(chains)):
            print(f"devnet: --base-port {args.base_port} is out of range", file=sys.stderr)
            return 2
        old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            with Devnet.start(chains, base_port=args.base_port, seed=args.seed,
                              cache=not args.no_cache) as net:
                try:   # a stop that comes while it is written or printed removes it too
                    path = net.write_manifest(args.manifest)
                    for name in net.chains:
                        c = net.manifest["chains"][name]
                        print(f"{name:<9} chain {c['chain_id']:<6} {c['rpc_url']}  "
                              f"{len(c['tokens'])} tokens, {len(c['pools'])} pools", flush=True)
                    print(f"manifest {path}  (ready in {sum(net.timings.values()):.1f} s, "
                          f"{', '.join(f'{n} {h}' for n, h in net.how.items())}; Ctrl-C stops)",
                          flush=True)
                    if args.traffic > 0:
                        Traffic(net.manifest, rate=args.traffic, seed=args.seed,
                                rival=_rival(net.manifest, args.rival, args.seed)
                                ).run(on_swap=_print_swap)
                    else:
                        while True:
                            signal.pause()
                finally:
                    Path(args.manifest).unlink(missing_ok=True)  # it names ports that are gone
        except (KeyboardInterrupt, _Stop):
            print("devnet: stopped", file=sys.stderr)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    try:
        manifest = json.loads(Path(args.manifest).read_text())
    except (OSError, ValueError) as exc:
        print(f"devnet: cannot read manifest {args.manifest}: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "down":
        pid = manifest.get("pid")
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (TypeError, ValueError, ProcessLookupError) as exc:
            print(f"devnet: no running devnet for {args.manifest} (pid {pid}): {exc}", file=sys.stderr)
            return 1
        return 0
    if args.rate <= 0 or args.big_every < 1 or not 0 <= args.rival <= 1:
        print("devnet: --rate must be > 0, --big-every >= 1 and --rival between 0 and 1",
              file=sys.stderr)
        return 2
    old = signal.signal(signal.SIGTERM, _raise_stop)
    traffic = Traffic(manifest, rate=args.rate, big_every=args.big_every, seed=args.seed,
                      rival=_rival(manifest, args.rival, args.seed))
    try:
        traffic.run(duration=args.duration, on_swap=_print_swap)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
    print(f"devnet: {traffic.sent} swaps sent"
          + (f"; rival {json.dumps(traffic.rival.statistics())}" if traffic.rival else ""),
          file=sys.stderr)
    return 0


def _rival(manifest: dict, share: float, seed: int):
    if share <= 0:
        return None
    from .rival import Rival
    r = Rival(manifest, share=share, seed=seed)
    print(f"rival: accounts {r.account}; back-runs big swaps on "
          + ", ".join(f"{c} {len(r.pools(c))} pools" for c in r.sides), flush=True)
    return r
