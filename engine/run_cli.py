"""`syndicate run`: the supervisor (engine/core/run.py), with what a user running the main job
needs around it, none of which the core may know about:

    [devnet] managed = true   (the default engine.toml; off as soon as the file names endpoints)
        start the three-chain anvil devnet with its traffic and rival (engine/devnet/managed.py),
        prove every chain is anvil, fill [chains] from its manifest, and trade on it live with
        anvil's dev account 1 (`[devnet] trade = "paper"` keeps paper mode); stopped and
        removed on every way out, after the roles
    the summary               live in a terminal, log lines otherwise, final at exit
                              (engine/summary.py); --no-summary turns the live view off
    --duration S              stop after S seconds (graceful, exit 0), print the final summary
                              and, on the managed devnet, the on-chain check: the executor
                              owner's token balance change against the realised profit

Exit codes as engine/core/run.py: 0 stopped cleanly, 1 a failure it names (the devnet did not
start), 2 bad input (nothing started).
"""
from __future__ import annotations

import json
import os
import signal
import sys

from . import config as config_mod
from .core import run as core_run


class _Stop(Exception):
    """SIGTERM while the devnet starts: unwind so that every `finally` runs."""


def build_parser():
    p = core_run.build_parser()
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds and print "
                   "the final summary (exit 0)")
    p.add_argument("--no-summary", action="store_true", help="no live summary in the terminal "
                   "(log lines instead, as when stdout is not a terminal)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.duration is not None and not args.duration > 0:
        print(f"syndicate run: --duration {args.duration:g}: must be > 0 seconds", file=sys.stderr)
        return 2
    try:
        cfg, kinds = core_run.load_checked(args)
    except config_mod.ConfigError as e:
        print(f"syndicate: configuration error: {e}", file=sys.stderr)
        return 2
    from .devnet.managed import off_reason
    why_off = off_reason(cfg)
    if args.check:
        print(f"{cfg.path}: ok ({sum(r.enabled for r in cfg.roles.values())} roles)\n"
              f"devnet: {'off: ' + why_off if why_off else 'managed'}")
        return 0
    if why_off is not None:
        if cfg.devnet.get("managed"):
            print(f"syndicate: the managed devnet is off: {why_off}; [engine] mode = "
                  f"{cfg.engine['mode']!r}", file=sys.stderr)
        return _run(cfg, kinds, args)
    return _run_on_devnet(cfg, args)


def _run(cfg, kinds, args, *, patch=None, note="", devnet=None, tokens=None) -> int:
    from .summary import Summary
    live = sys.stdout.isatty() and not args.no_summary
    summary = Summary(cfg, live=live, duration=args.duration, note=note, tokens=tokens)
    final: dict = {}

    def at_stop(sup):
        summary.log = sup.log
        # the ledger's last records first (final() reads them): a trade whose receipt the
        # executor recorded while stopping is in the realised profit it is reconciled with
        doc = summary.final(sup)
        if devnet is not None:
            doc["onchain"] = _reconcile(devnet, summary)
        final.update(doc)
    try:
        code = core_run.start(cfg, kinds, patch=patch, ticker=_Bound(summary), quiet=live,
                              at_stop=at_stop)
    finally:
        summary.stop_live()
    if final:
        path = cfg.log_path.with_suffix(".summary.json")
        try:
            path.write_text(json.dumps(final, indent=2, default=str) + "\n")
        except OSError:
            pass
        summary.print_final(final)
    return code


class _Bound:
    """The supervisor's ticker: the summary, told the supervisor's log at its first call."""

    def __init__(self, summary):
        self.summary = summary

    @property
    def due(self) -> float:
        return self.summary.due

    def tick(self, sup) -> None:
        if self.summary.log is None:
            self.summary.log = sup.log
        self.summary.tick(sup)


def _run_on_devnet(cfg, args) -> int:
    from .chain.keys import KEY_ENV
    from .core.owner import AlreadyRunning, OwnerLock
    from .devnet.managed import DEV_KEY, DevnetError, ManagedDevnet, chains_of
    try:   # a second engine of this name would refuse only after our devnet was up
        lock = OwnerLock(cfg.name)
        lock.acquire(str(cfg.state_dir))
        lock.release()
    except AlreadyRunning as e:
        print(f"syndicate: refusing to start: {e}", file=sys.stderr)
        return 2
    d = cfg.devnet
    live = d["trade"] == "live"
    chains = chains_of(cfg)
    manifest = cfg.state_dir / "devnet" / cfg.name / "manifest.json"
    log_path = cfg.log_path.with_suffix(".devnet.log")
    print(f"syndicate: starting the managed devnet ({', '.join(chains)}; traffic {d['traffic']:g} "
          f"swaps/s, rival on {d['rival']:g} of the pools; its output in {log_path})",
          file=sys.stderr, flush=True)
    old = signal.signal(signal.SIGTERM, _raise_stop)
    net, keys = None, {}
    try:
        net = ManagedDevnet.start(manifest, log_path, chains=chains, traffic=d["traffic"],
                                  rival=d["rival"], seed=d["seed"])
        try:
            doc = net.wait_ready()
            net.verify(chains)
        except DevnetError as e:
            print(f"syndicate: the managed devnet failed: {e}", file=sys.stderr)
            return 1
        if live:
            # the dev key reaches the executor as every key does, through its variable; it
            # is accepted only because every chain above proved to be anvil (keys.py checks
            # again in the executor, per node)
            for r in cfg.roles.values():
                if r.enabled and r.kind in config_mod.EXECUTOR_KINDS:
                    keys[r.options.get("key_env") or KEY_ENV] = DEV_KEY
            for var in keys:
                if os.environ.get(var) not in (None, "", DEV_KEY):
                    print(f"syndicate: the managed devnet trades with anvil's dev account 1; "
                          f"the key in {var} is not used", file=sys.stderr)
            os.environ.update(keys)
        patch = {"chains": {"manifest": str(manifest)}, "engine": {"mode": "live" if live else "paper"}}
        try:
            cfg2, kinds = core_run.load_checked(args, patch=patch)
        except config_mod.ConfigError as e:
            print(f"syndicate: configuration error: {e}", file=sys.stderr)
            return 2
        # SIGTERM still unwinds here until the supervisor installs its own handlers
        tokens = {(name, t["address"].lower()): (t.get("symbol", "?"), int(t.get("decimals") or 0))
                  for name, c in (doc.get("chains") or {}).items()
                  for t in (c.get("tokens") or {}).values() if isinstance(t, dict)}
        net.start_balances = net.balances()
        return _run(cfg2, kinds, args, patch=patch, devnet=net, tokens=tokens,
                    note=f"managed devnet{' (anvil dev account 1)' if live else ''}, ready in "
                         f"{net.t_ready:.0f} s")
    except (_Stop, KeyboardInterrupt):
        print("syndicate: stopped while the devnet was starting", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)
        if net is not None:
            net.stop()
        for var in keys:
            os.environ.pop(var, None)


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def _reconcile(net, summary) -> dict:
    """Per chain and token: the executor owner's balance change since the start, beside the
    profit the ledger says landed in this run (they must agree to the wei)."""
    end = net.balances()      # the roles have stopped: nothing more lands
    realised: dict[str, dict[str, int]] = {}
    for t in summary.trades.values():
        if t.get("state") == "landed" and t.get("realised") is not None:
            tok = str(t.get("token", "")).lower()
            realised.setdefault(t["chain"], {}).setdefault(tok, 0)
            realised[t["chain"]][tok] += int(t["realised"])
    out = {}
    for c, toks in end.items():
        start = getattr(net, "start_balances", {}).get(c, {})
        for tok, bal in toks.items():
            change = bal - start.get(tok, bal)
            got = realised.get(c, {}).get(tok, 0)
            if change or got:
                out.setdefault(c, {})[tok] = {"change": change, "realised": got}
    return out


main_run = main
