"""`syndicate replay FILE...`: recorded logs through a real engine, paper mode, and what it did.

    files ─► inputs.read_files / seed_pools ─► one prepared file per chain (temp dir)
    a real engine (`python -m engine.cli run` on a generated engine.toml, its own session):
        replay-<chain> (roles.replay:ReplaySource: PoolBook.apply, the monitor's publish) ─►
        events.<chain> ─► the chain's agent (spotter / analyst / specialist) ─► out.<agent> ─►
        flash-loan-executor (paper: its re-quote; no node, so no eth_call: refused, with why)
    ... until every replay role's status says `done` ─► SIGTERM, the engine stops cleanly ─►
    the LMDB store read offline: `opportunities` (each agent's decision and reason), `outcomes`
    (the executor's) joined to the swaps that crossed the threshold ─► text or JSON lines

Bad input (README "Replay"): a bad line or row is named (file:line: what) on stderr, skipped
and counted in the summary; `--strict` stops at the first with exit 2.  A file that cannot be
read, of no known format, or with no log: exit 2, nothing started.  Exit 1: the engine failed
(its stderr's tail is printed).  Nothing is left behind on any exit path: the engine's process
group is stopped and its shared memory checked, the temp dir removed (`--state DIR` keeps the
engine's state dir, LMDB included, for `syndicate snapshot` and `syndicate report`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from engine.config import render
from engine.core.wiring import stop_engine
from .inputs import (SHOWN_ERRORS, BadInput, manifest_pools, read_files, read_pool_file,
                     seed_from_node, seed_pools)

AGENT = {"arbitrum": ("arbitrum-spotter", "roles.agents:Spotter"),
         "base": ("base-analyst", "roles.agents:Analyst"),
         "polygon": ("polygon-specialist", "roles.agents:Specialist")}
EXECUTOR = "flash-loan-executor"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise BadInput(f"syndicate replay: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="syndicate replay", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Feed recorded logs through the real engine (paper mode): every swap "
                            "that crossed the threshold, what each role decided and why.",
                epilog="Inputs: eth_getLogs JSON (an array or JSON lines) or demeter-fetch raw "
                       "CSVs (../shared/data/chain).\nBad input: a malformed line or row is "
                       "named (file:line: what), SKIPPED and counted in the summary;\n--strict "
                       "stops at the first one (exit 2). An unreadable file, or one with no "
                       "log, is exit 2.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--chain", help="the engine chain the logs are fed into (arbitrum, base, "
                                   "polygon); default: each log's `chain`, else the file name")
    p.add_argument("--speed", default="max", help="max (as fast as the roles decide), 1x, 10x, Nx")
    p.add_argument("--pools", metavar="FILE", help="pool-state file: tokens, fees (and a state)")
    p.add_argument("--manifest", metavar="FILE",
                   help="a devnet (or chain) manifest: tokens, lenders, the executor contract; "
                        "its pools are read from its rpc_url just before the first log")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.add_argument("--strict", action="store_true", help="stop at the first bad line (exit 2)")
    p.add_argument("--state", metavar="DIR", help="keep the engine's state dir here (LMDB)")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="give up after this many seconds (0: none)")
    return p


def _manifest(path: str) -> dict[str, dict]:
    """chain -> its manifest entry (engine/config.py checks the file again when the engine
    loads it: an http rpc_url per chain)."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise BadInput(f"{path}: not a readable JSON manifest: {e}") from None
    chains = doc.get("chains") if isinstance(doc, dict) else None
    if not isinstance(chains, dict) or not chains:
        raise BadInput(f"{path}: no \"chains\" in this manifest")
    return {c: m for c, m in chains.items() if isinstance(m, dict)}


def _speed(text: str) -> float:
    t = text.strip().lower()
    if t == "max":
        return 0.0
    try:
        v = float(t[:-1] if t.endswith("x") else t)
    except ValueError:
        v = -1.0
    if v <= 0:
        raise BadInput(f"syndicate replay: --speed {text!r}: max, 1x, 10x or another Nx")
    return v


def engine_toml(name: str, state: Path, chains: list[str], inputs: dict, speed: float,
                manifest: str | None = None) -> str:
    roles: dict = {}
    for c in chains:
        roles[f"replay-{c}"] = {"kind": "roles.replay:ReplaySource", "chains": [c],
                                "options": {"input": str(inputs[c][0]), "speed": speed,
                                            "crossed": str(inputs[c][1])}}
        name_, kind = AGENT[c]
        roles[name_] = {"kind": kind, "chains": [c]}
    roles[EXECUTOR] = {"kind": "roles.executor:Executor", "chains": chains,
                       "subscribe": "quiet", "inbox": "interrupt"}
    doc = {"engine": {"name": name, "state_dir": str(state), "mode": "paper", "log_level": "info"},
           "supervisor": {"max_restarts": 0}, "roles": roles}
    if manifest:
        doc["chains"] = {"manifest": manifest}
    return render(doc)


class _Engine:
    """The engine process; `close()` stops its whole session and checks its shared memory."""

    def __init__(self, cfg: Path, name: str, err: Path):
        self.name, self.err = name, err
        with open(err, "wb") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
                                         stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)

    def tail(self) -> str:
        try:
            return self.err.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def close(self) -> list[str]:
        return stop_engine(self.proc, self.name, 30)


def _info(run_dir: Path, role: str) -> dict:
    try:
        return orjson.loads((run_dir / "roles" / f"{role}.info.json").read_bytes())
    except (OSError, ValueError):
        return {}


def _collect(lmdb: Path) -> tuple[dict, dict]:
    """event id -> [agent decisions]; event id -> the executor's newest record."""
    from engine.core.store import ReadOnlyStore
    decisions: dict[str, list] = {}
    outcomes: dict[str, dict] = {}
    store = ReadOnlyStore.open(lmdb)
    try:
        with store.read() as r:
            for role in r.prefixes("opportunities"):
                for _, rec in r.records("opportunities", role):
                    decisions.setdefault(str(rec.get("event")), []).append(rec)
            for role in r.prefixes("outcomes"):
                for _, rec in r.records("outcomes", role):
                    outcomes[str(rec.get("event"))] = rec
    finally:
        store.close()
    return decisions, outcomes


def _decision_text(d: dict) -> str:
    if d.get("approved"):
        return f"approved: net {d.get('net')} {d.get('token', '')}".rstrip()
    return f"refused {d.get('code')}: {d.get('reason')}"


def _outcome_text(o: dict | None) -> str:
    if o is None:
        return "nothing (no approved Action reached it)"
    if o.get("state") == "paper":
        return f"paper: simulated {o.get('simulated')} (predicted {o.get('predicted')})"
    return f"{o.get('state')}: {o.get('reason', '')}"


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    # SIGTERM unwinds like Ctrl-C: the engine (in its own session) is stopped and the temp dir
    # removed by the finally below, instead of both outliving this process
    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except BadInput as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("syndicate replay: interrupted; the engine was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    speed = _speed(args.speed)
    manifest = _manifest(args.manifest) if args.manifest else {}
    known = {a: p for m in manifest.values() for a, p in manifest_pools(m).items()}
    known.update(read_pool_file(args.pools) if args.pools else {})
    replay = read_files(args.files, args.chain, strict=args.strict)
    seed_pools(replay, known)
    for c in sorted(replay.logs):
        if c in manifest:
            seed_from_node(replay, c, manifest[c])
    for msg in replay.bad[:SHOWN_ERRORS]:
        print(f"syndicate replay: skipped {msg}", file=sys.stderr)
    if len(replay.bad) > SHOWN_ERRORS:
        print(f"syndicate replay: ... and {len(replay.bad) - SHOWN_ERRORS} more bad lines skipped",
              file=sys.stderr)
    chains = sorted(replay.logs)
    tmp = Path(tempfile.mkdtemp(prefix="syn-replay-"))
    state = Path(args.state).resolve() if args.state else tmp / "state"
    name = f"replay{os.getpid()}"
    eng = None
    try:
        inputs = {}
        for c in chains:
            path, crossed = tmp / f"input.{c}.jsonl", tmp / f"crossed.{c}.jsonl"
            with open(path, "wb") as f:
                f.write(orjson.dumps({"chain": c, "pools": list(replay.pools[c].values())}) + b"\n")
                for log in replay.logs[c]:
                    f.write(orjson.dumps(log) + b"\n")
            inputs[c] = (path, crossed)
        cfg = tmp / "engine.toml"
        cfg.write_text(engine_toml(name, state, chains, inputs, speed,
                                   str(Path(args.manifest).resolve()) if args.manifest else None))
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        eng = _Engine(cfg, name, tmp / "engine.stderr")
        run_dir = state / "run" / name
        infos: dict = {}
        shown = 0.0
        while True:
            infos = {c: (_info(run_dir, f"replay-{c}").get("chains") or {}).get(c) or {} for c in chains}
            if all(i.get("done") for i in infos.values()):
                break
            if eng.proc.poll() is not None:
                print(f"syndicate replay: the engine exited ({eng.proc.returncode}) before the "
                      f"replay was done:\n{eng.tail()}", file=sys.stderr)
                return 1
            if args.timeout and time.monotonic() - t0 > args.timeout:
                print(f"syndicate replay: not done after {args.timeout:g} s: "
                      + "; ".join(i.get("summary", "starting") for i in infos.values()), file=sys.stderr)
                return 1
            if not args.json and time.monotonic() - shown > 5.0 and any(infos.values()):
                shown = time.monotonic()
                print("  " + "; ".join(i.get("summary", "starting") for i in infos.values()),
                      file=sys.stderr)
            time.sleep(0.1)
        failed = {c: i["error"] for c, i in infos.items() if i.get("error")}
        if failed:
            print("syndicate replay: the replay failed: " + "; ".join(
                f"{c}: {e}" for c, e in failed.items()), file=sys.stderr)
            return 1
        took = time.monotonic() - t0
        load1 = os.getloadavg()[0]
        ex_info = _info(run_dir, EXECUTOR)
        left = eng.close()
        code = eng.proc.returncode
        eng = None
        decisions, outcomes = _collect(state / "lmdb" / name)
        crossed = []
        for c in chains:
            if inputs[c][1].exists():
                crossed += [orjson.loads(x) for x in inputs[c][1].read_bytes().splitlines()]
        return _print(args, replay, chains, infos, crossed, decisions, outcomes, ex_info,
                      took=took, load=(load0, load1), engine_exit=code, left=left, speed=speed)
    finally:
        if eng is not None:
            eng.close()
        shutil.rmtree(tmp, ignore_errors=True)     # --state lives outside it


def _print(args, replay, chains, infos, crossed, decisions, outcomes, ex_info, *, took, load,
           engine_exit, left, speed) -> int:
    codes: Counter = Counter()
    approved = refused = undecided = 0
    states: Counter = Counter()
    for sw in crossed:
        ident = f"{sw['chain']}:{sw['block_hash']}:{sw['tx']}:{sw['log_index']}"
        ds = decisions.get(ident, [])
        o = outcomes.get(ident)
        undecided += not ds
        for d in ds:
            if d.get("approved"):
                approved += 1
            else:
                refused += 1
                codes[d.get("code")] += 1
        if o is not None:
            states[o.get("state")] += 1
        if args.json:
            print(orjson.dumps({"type": "swap", **sw, "event": ident,
                                "decisions": [{k: d.get(k) for k in (
                                    "role", "approved", "code", "reason", "net", "token")}
                                    for d in ds],
                                "executor": ({k: o.get(k) for k in ("state", "reason", "simulated",
                                                                     "predicted")} if o else None)
                                }).decode())
            continue
        print(f"{sw['chain']} block {sw['block']} tx {sw['tx']} log {sw['log_index']} pool "
              f"{sw['pool']} ({sw['kind']} {sw['event']}): moved {sw['impact_bps']} bps")
        for d in ds:
            print(f"    {d.get('role')}: {_decision_text(d)}")
        if not ds:
            print("    (no decision recorded)")
        print(f"    {EXECUTOR}: {_outcome_text(o)}")
    logs = sum(i.get("logs", 0) for i in infos.values())
    summary = {
        "type": "summary", "files": replay.files, "chains": chains,
        "speed": "max" if speed == 0 else f"{speed:g}x", "logs": replay.count(),
        "bad_lines": len(replay.bad), "pools": {c: len(replay.pools[c]) for c in chains},
        "placeholder_tokens": sum(1 for c in chains for p in replay.pools[c].values()
                                  if p.get("placeholder_tokens")),
        "synthetic_block_hashes": replay.synthetic_hashes,
        "records": sum(i.get("events", 0) for i in infos.values()),
        "crossed": len(crossed), "decisions": {"approved": approved, "refused": refused,
                                               "codes": dict(codes), "missing": undecided},
        "executor": dict(states), "executor_summary": ex_info.get("summary", ""),
        "seconds": round(took, 3),
        "replay_seconds": round(sum(i.get("seconds", 0.0) for i in infos.values()), 3),
        "logs_per_s": round(logs / max(1e-9, sum(i.get("seconds", 0.0) for i in infos.values())), 1),
        "load": [round(x, 2) for x in load], "engine_exit": engine_exit,
        "left_behind": left,
        "book": {c: {k: v for k, v in (infos[c].get("book") or {}).items()} for c in chains}}
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(f"\nreplay: {summary['logs']} logs from {len(replay.files)} file(s) "
              f"({summary['bad_lines']} bad lines skipped), chains {', '.join(chains)}, "
              f"speed {summary['speed']}")
        print(f"  pools seeded: {summary['pools']}"
              + (f" ({summary['placeholder_tokens']} with placeholder tokens: give --pools for "
                 "real ones)" if summary["placeholder_tokens"] else "")
              + ("; block hashes made from block numbers (the input has none)"
                 if replay.synthetic_hashes else ""))
        print(f"  {summary['records']} pool records published, {len(crossed)} crossed the "
              f"threshold; decisions: {approved} approved, {refused} refused"
              + (f" ({', '.join(f'{k} {v}' for k, v in codes.most_common())})" if codes else "")
              + (f", {undecided} without a decision" if undecided else ""))
        print(f"  executor: {ex_info.get('summary', '-')}")
        print(f"  {took:.1f} s in all, replay {summary['replay_seconds']:.1f} s "
              f"({summary['logs_per_s']} logs/s), load {load[0]:.1f} -> {load[1]:.1f}; engine "
              f"exit {engine_exit}" + (f"; removed left-over segments {left}" if left else ""))
    return 0 if engine_exit == 0 else 1
