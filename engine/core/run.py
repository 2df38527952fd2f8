"""`syndicate run`: validate engine.toml, then start the supervisor (engine/core/supervisor.py)
with the role process's entry point (engine/core/role.py), and map every way it can fail to an
exit code: 0 stopped cleanly, 1 stopped on a failure it names, 2 bad input (nothing started).

This is the one module that knows both the supervisor and the role process: each of those
imports only the wiring they share (engine/core/wiring.py).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .. import config as config_mod
from .log import Log
from .owner import AlreadyRunning
from .role import describe_kind, resolve_kind, role_main
from .supervisor import Supervisor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syndicate run", description=(
        "Start the supervisor: one process per role in engine.toml, restarted by policy, "
        "controlled by signals (see README: Signals)."))
    p.add_argument("-c", "--config", default="engine.toml", help="configuration file "
                   "(default: ./engine.toml)")
    p.add_argument("--name", help="engine instance name (default: [engine] name); two engines "
                   "with different names run side by side")
    p.add_argument("--state-dir", help="override [engine] state_dir")
    p.add_argument("--log-format", choices=("text", "json"), help="override [engine] log_format")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    return p


def load_checked(args, patch: dict | None = None) -> tuple[config_mod.EngineConfig, dict[str, type]]:
    # each enabled role's kind is resolved and its options and tasks checked by load()
    cfg = config_mod.load(args.config, describe=describe_kind, patch=patch)
    cfg = config_mod.with_overrides(cfg, name=args.name, state_dir=args.state_dir,
                                    log_format=args.log_format)
    # load() has resolved every kind and refused a source without chains, each with its line
    kinds = {r.name: resolve_kind(r.kind) for r in cfg.roles.values() if r.enabled}
    return cfg, kinds


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, kinds = load_checked(args)
    except config_mod.ConfigError as e:
        print(f"syndicate: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{cfg.path}: ok ({sum(r.enabled for r in cfg.roles.values())} roles)")
        return 0
    return start(cfg, kinds)


def start(cfg: config_mod.EngineConfig, kinds: dict[str, type], *, patch: dict | None = None,
          ticker=None, quiet: bool = False, at_stop: Callable | None = None) -> int:
    """Run the supervisor until it stops; the exit code.  patch: laid over engine.toml at every
    reload (Supervisor.patch); ticker: called from the supervisor's loop (Supervisor.ticker);
    quiet: once started, logs go to the log file only (the live summary owns the terminal);
    at_stop(sup): after the roles have stopped, before the control block and store close."""
    try:
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"syndicate: cannot create {cfg.log_path.parent}: {e.strerror}", file=sys.stderr)
        return 2
    log = Log("supervisor", fmt=cfg.engine["log_format"], level=cfg.engine["log_level"],
              path=cfg.log_path)
    sup = Supervisor(cfg, log=log, kinds=kinds, resolve_kind=resolve_kind, role_main=role_main)
    sup.patch, sup.ticker = patch, ticker
    try:
        try:
            sup.setup()
        except AlreadyRunning as e:
            log.error(f"refusing to start: {e}")
            return 2
        except config_mod.ConfigError as e:
            log.error(f"configuration error: {e}")
            return 2
        except OSError as e:   # a state dir that is a file, not writable, a full disk…
            log.error(f"cannot set up: {e.strerror or e}"
                      + (f": {e.filename}" if getattr(e, "filename", None) else ""))
            return 2
        except Exception as e:
            from .store import StoreError
            if isinstance(e, StoreError):   # not a store, a newer schema, a corrupt file
                log.error(f"cannot open the store: {e}")
                return 2
            raise
        log.stderr = not quiet       # the roles forked from here inherit it
        try:
            code = sup.run()
        finally:
            log.stderr = True
        if at_stop is not None:
            at_stop(sup)
        if code:
            log.error("supervisor exiting", code=code, reason=sup.exit_reason)
        else:
            log.info("supervisor stopped", code=0)
        return code
    finally:
        if sup.owner.fd is not None or sup.rundir.lock_fd is not None or sup.wiring is not None:
            sup.cleanup()
        log.close()


main_run = main
