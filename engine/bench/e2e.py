"""`syndicate bench e2e`: a big swap on the devnet → its log → an agent's Action → the executor's
signed transaction → its receipt, in a real engine in live mode, beside a plain web3.py bot.

    phase 1, ours: `syndicate run` (live, the devnet owner's key in the environment) with
      monitor-arbitrum ─► arbitrum-spotter ─► flash-loan-executor (receipt_poll 20 ms)
      this process makes one big swap every --interval s (the devnet's traffic generator,
      which reads each swap's receipt SETTLE_S later, out of the engine's way) and
      reads the executor's ledger at the end (`outcomes`: every stage is stamped there)
        detect   log bytes on the socket → pool record in events.arbitrum   (CLOCK_MONOTONIC)
        decide   that record → the agent's Action in its outbox
        accept   → the executor's switch accepted it ("queued")
        sign     → simulated, signed and "signed" committed (the sending thread)
        send     → the endpoint took it (eth_sendRawTransaction returned)
        mined    → the receipt was seen (wall clock; anvil automines on send)
    phase 2, baseline: a fresh devnet with the same seed and the same swaps; one process, one
      loop of plain web3.py: a log filter polled every 5 ms, every pool re-read over JSON-RPC,
      the same engine/arb search and decision with web3's eth_call as the simulator, eth-account
      signing, send_raw_transaction, wait_for_transaction_receipt.

Success rate = landed with a realised profit > 0 / sent.  Stage figures in ms; `run(...)` is
what `syndicate bench all` calls.  The load (os.getloadavg) is printed beside the figures.

    syndicate bench e2e [--trades 100] [--baseline-trades N] [--interval 0.4] [--seed 3]
                        [--no-baseline] [--json] [--dump FILE]

The baseline handles one swap at a time (~1.5-2 s each: its filter, its re-reads, its receipt
wait), so `--baseline-trades` gives it the first N of the same swaps (default: all of them)
when a long run of ours would take the baseline far longer.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from ..config import render
from ..core.wiring import stop_engine
from ..devnet.managed import DEV_KEY as DEVNET_OWNER_KEY   # anvil's account 1: devnet only
from .report import Comparison, Summary, emit, host_info

CHAIN = "arbitrum"
STAGES = ("detect", "decide", "accept", "sign", "send", "mined")
# After each big swap the traffic generator (this process, web3.py) waits this long before it
# reads the swap's receipt and the pool's new price: that work (~4 ms of CPU, and anvil's to
# answer it) otherwise lands in the very milliseconds the engine reacts in, on the same two
# cores; on a real chain the other traders' clients run on other machines.
SETTLE_S = 0.1


def _toml(name: str, state: Path, manifest: Path, thread: bool = True) -> str:
    light = {"checksum": {"interval": 1.0}}
    return render({
        "engine": {"name": name, "state_dir": str(state), "log_level": "warning", "mode": "live"},
        "supervisor": {"max_restarts": 0},
        "chains": {"manifest": str(manifest)},
        "roles": {
            f"monitor-{CHAIN}": {"kind": "roles.monitor:ChainMonitor", "chains": [CHAIN]},
            f"{CHAIN}-spotter": {"kind": "roles.agents:Spotter", "chains": [CHAIN],
                                 "tasks": light},
            "flash-loan-executor": {"kind": "roles.executor:Executor", "chains": [CHAIN],
                                    "subscribe": "quiet", "inbox": "interrupt", "tasks": light,
                                    "options": {"receipt_poll": 0.02,
                                                "sending_thread": thread}}}})


class _Engine:
    """A real engine in its own session; everything undone in close()."""

    def __init__(self, tmp: Path, manifest: Path, thread: bool = True):
        self.name = f"benche2e{os.getpid()}"
        self.tmp = tmp
        self.cfg = tmp / "engine.toml"
        self.cfg.write_text(_toml(self.name, tmp / "state", manifest, thread))
        self.roles = tmp / "state" / "run" / self.name / "roles"
        self.err = tmp / "engine.stderr"
        env = {**os.environ, "SYNDICATE_EXECUTOR_KEY": DEVNET_OWNER_KEY}
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-c", str(self.cfg)],
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         start_new_session=True)

    def info(self, role: str) -> dict:
        try:
            return orjson.loads((self.roles / f"{role}.info.json").read_bytes())
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited ({self.proc.returncode}): "
                                   f"{self.err.read_text(errors='replace')[-2000:]}")
            mon = (self.info(f"monitor-{CHAIN}").get("chains") or {}).get(CHAIN) or {}
            ex = self.info("flash-loan-executor")
            if (mon.get("follower") or {}).get("active") and ex.get("mode") == "live":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the engine was not ready within {timeout:g} s: "
                           f"{self.info('flash-loan-executor').get('summary')!r}")

    def outcomes(self) -> list[dict]:
        r = subprocess.run([sys.executable, "-m", "engine.cli", "snapshot",
                            str(self.tmp / "state" / "lmdb" / self.name), "export", "--db",
                            "outcomes", "--format", "jsonl"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"snapshot export failed: {r.stderr[-500:]}")
        return [(lambda d: d.get("value", d))(json.loads(ln)) for ln in r.stdout.splitlines() if ln]

    def close(self) -> None:
        stop_engine(self.proc, self.name, 20)


def stages_of(records: list[dict]) -> dict:
    """Per Action key, from the executor's ledger: each stage's ms and the final state."""
    by: dict[str, dict] = {}
    for r in records:
        k = by.setdefault(r["key"], {})
        k.setdefault("_states", []).append(r["state"])
        k[r["state"]] = r
    out = {"stages": {s: [] for s in STAGES}, "log_to_sent": [], "log_to_handed": [],
           "record_to_sent": [], "rows": [],
           "accept_ms": [], "sent": 0, "phases": {}, "wait_behind": {},
           "landed": 0, "profitable": 0, "reverted": 0, "refused": {}, "states": {}}
    firsts: dict[int, dict] = {}     # a log (t_origin) -> the row of the first Action sent of it
    for key, k in by.items():
        final = k["_states"][-1]
        out["states"][final] = out["states"].get(final, 0) + 1
        if final == "refused":
            why = str(k["refused"].get("reason", "")).split(":", 1)[0]
            out["refused"][why] = out["refused"].get(why, 0) + 1
        q, sent = k.get("queued"), k.get("sent")
        if sent is None or q is None:
            continue
        out["sent"] += 1
        out["record_to_sent"].append(sent["ms_sent"])
        if sent.get("ms_accept") is not None:
            out["accept_ms"].append(sent["ms_accept"])
        t_o, t_e, t_a, t_acc = (q.get(f) for f in ("t_origin", "t_event", "t_agent", "t_accept"))
        if all(isinstance(t, int) and t > 0 for t in (t_o, t_e, t_a, t_acc)):
            st = out["stages"]
            st["detect"].append((t_e - t_o) / 1e6)
            st["decide"].append((t_a - t_e) / 1e6)
            st["accept"].append((t_acc - t_a) / 1e6)
            st["sign"].append(sent["ms_signed"])
            st["send"].append(sent["ms_submit"])
            for name, ms in (sent.get("ms_phases") or {}).items():
                out["phases"].setdefault(name, []).append(ms)
            wait = (sent.get("ms_phases") or {}).get("wait")
            if wait is not None:
                out["wait_behind"].setdefault(sent.get("behind") or "?", []).append(wait)
            row = {"key": key, "t_origin": t_o, "t_accept": t_acc,
                   "log_to_sent": (t_acc - t_o) / 1e6 + sent["ms_sent"],
                   "log_to_handed": (t_acc - t_o) / 1e6 + sent["ms_handed"]
                   if sent.get("ms_handed") is not None else None,
                   "stages": {"detect": st["detect"][-1], "decide": st["decide"][-1],
                              "accept": st["accept"][-1]},
                   "phases": sent.get("ms_phases") or {}, "behind": sent.get("behind")}
            out["rows"].append(row)
            out["log_to_sent"].append(row["log_to_sent"])
            if row["log_to_handed"] is not None:
                out["log_to_handed"].append(row["log_to_handed"])
            first = firsts.get(t_o)
            if first is None or t_acc < first["t_accept"]:
                firsts[t_o] = row
        end = k.get("landed") or k.get("reverted")
        if end is not None:
            out["stages"]["mined"].append((end["t"] - sent["t"]) * 1e3)
        if final == "landed":
            out["landed"] += 1
            if int(k["landed"].get("realised") or 0) > 0:
                out["profitable"] += 1
        elif final == "reverted":
            out["reverted"] += 1
    for row in out["rows"]:
        row["first_of_log"] = firsts[row["t_origin"]] is row
    out["first_of_log"] = [r["log_to_sent"] for r in firsts.values()]
    out["first_of_log_handed"] = [r["log_to_handed"] for r in firsts.values()
                                  if r["log_to_handed"] is not None]
    return out


def run_ours(manifest: dict, trades: int, interval: float, seed: int, progress=None,
             thread: bool = True) -> dict:
    from engine.devnet import Traffic
    tmp = Path(tempfile.mkdtemp(prefix="syn-bench-e2e-"))
    eng = None
    try:
        mpath = tmp / "manifest.json"
        mpath.write_text(json.dumps(manifest))
        eng = _Engine(tmp, mpath, thread)
        eng.wait_ready()
        traffic = Traffic(manifest, seed=seed, chains=[CHAIN])
        for i in range(trades):
            t0 = time.monotonic()
            traffic.step(big=True, settle=SETTLE_S)
            if progress:
                progress("ours", i + 1, trades)
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        # what is still being sent or followed settles
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = eng.info("flash-loan-executor")
            if not info.get("pending") and not (info.get("sender") or {}).get("queue"):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        summary = eng.info("flash-loan-executor").get("summary", "")
        eng.close()
        res = stages_of(eng.outcomes())
        res.update(summary=summary, load1=os.getloadavg()[0], swaps=traffic.sent)
        return res
    finally:
        if eng is not None:
            eng.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="syndicate bench e2e", description=__doc__.split("\n")[0])
    ap.add_argument("--trades", type=int, default=100, help="big swaps (each may open a gap)")
    ap.add_argument("--interval", type=float, default=0.4, help="seconds between big swaps")
    ap.add_argument("--baseline-trades", type=int, default=None,
                    help="the baseline's share: the first N of the same swaps (default: --trades)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--in-switch", action="store_true",
                    help="also a run with the executor sending inside its switch (as before the "
                         "sending thread), for its record → sent and switch figures")
    ap.add_argument("--dump", type=Path, metavar="FILE",
                    help="write one JSON line per Action sent (stages, the sending thread's "
                         "steps, first of its log or not)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.trades < 1 or args.interval <= 0 or (args.baseline_trades is not None
                                                  and not 1 <= args.baseline_trades <= args.trades):
        print("syndicate bench e2e: --trades and --interval must be positive, and "
              "--baseline-trades between 1 and --trades", file=sys.stderr)
        return 2
    from engine.chain.contracts import toolchain_missing
    missing = toolchain_missing()
    if missing:
        print(f"syndicate bench e2e: {missing}", file=sys.stderr)
        return 2

    def _stop(signum, frame):     # SIGTERM/SIGHUP unwind like Ctrl-C: every finally runs
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)

    def progress(phase, i, n):
        if not args.json and sys.stderr.isatty():
            print(f"\r  {phase}: {i}/{n} swaps", end="", file=sys.stderr, flush=True)

    doc = run(args.trades, args.interval, args.seed, baseline=not args.no_baseline,
              progress=progress, in_switch=args.in_switch, baseline_trades=args.baseline_trades,
              dump=args.dump)
    if not args.json and sys.stderr.isatty():
        print("", file=sys.stderr)
    emit("e2e", doc["results"], args.json, doc["extra"])
    return 0


def run(trades: int = 100, interval: float = 0.4, seed: int = 3, *, baseline: bool = True,
        progress=None, in_switch: bool = False, baseline_trades: int | None = None,
        dump: Path | None = None) -> dict:
    """Both phases; {"results": [Comparison], "extra": {...}} (for `bench all`).  `dump`: a
    file for one JSON line per Action sent in our phase (its stages, the sending thread's
    steps, whether it was the first of its log), to find what a slow one was waiting for."""
    from engine.devnet import Devnet

    from .e2e_web3 import run_baseline
    args = ("--prune-history", "256")
    with Devnet.start((CHAIN,), seed=0, anvil_args=args) as net:
        ours = run_ours(net.manifest, trades, interval, seed, progress)
    if dump is not None:
        dump.write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                  for r in sorted(ours["rows"], key=lambda r: r["t_accept"])))
    inline = None
    if in_switch:
        with Devnet.start((CHAIN,), seed=0, anvil_args=args) as net:
            inline = run_ours(net.manifest, trades, interval, seed, progress, thread=False)
    base = None
    if baseline:
        with Devnet.start((CHAIN,), seed=0, anvil_args=args) as net:
            base = run_baseline(net.manifest, baseline_trades or trades, interval, seed,
                                DEVNET_OWNER_KEY, progress)
    same = "same seed, same swaps, a fresh devnet each" + (
        f"; the baseline the first {baseline_trades} of {trades} swaps"
        if base and baseline_trades and baseline_trades < trades else "")
    results = []
    if ours["log_to_handed"]:
        results.append(Comparison(
            "e2e: swap log → signed transaction handed to the endpoint", "ms",
            Summary.of("syndicate (log bytes on the socket →)", ours["log_to_handed"]), None,
            notes="until the eth_sendRawTransaction request is on the endpoint's socket "
                  "(`ms_handed`); the web3.py loop can only be timed at the endpoint's answer: "
                  "below"))
    results.append(Comparison(
        "e2e: swap log → the endpoint's answer to the signed transaction", "ms",
        Summary.of("syndicate (log bytes on the socket →)", ours["log_to_sent"]),
        Summary.of("web3.py loop (log returned by its filter →)", base["log_to_sent"])
        if base else None,
        notes=same + "; anvil (automine) mines the block before it answers"))
    if ours["first_of_log_handed"]:
        results.append(Comparison(
            "e2e, the first Action sent of each swap log, handed to the endpoint", "ms",
            Summary.of("syndicate (log bytes on the socket →)", ours["first_of_log_handed"]),
            None, notes="a later Action of the same log waits for the earlier one to be sent "
                        "(its eth_call on pending must see it)"))
    results.append(Comparison(
        "e2e, the first Action sent of each swap log, at the endpoint's answer", "ms",
        Summary.of("syndicate (log bytes on the socket →)", ours["first_of_log"]),
        Summary.of("web3.py loop (log returned by its filter →)", base["log_to_sent"])
        if base else None, notes="the baseline sends one per swap"))
    if inline:
        results.append(Comparison(
            "e2e, the executor sending in its switch instead", "ms",
            Summary.of("syndicate, sending thread", ours["log_to_sent"]),
            Summary.of("syndicate, sending in the switch", inline["log_to_sent"]),
            notes="log bytes on the socket → sent; a later Action of the same swap waits "
                  "for the earlier one either way"))
    results.append(Comparison(
        "executor: record accepted in its switch → sent", "ms",
        Summary.of("syndicate (sending thread)", ours["record_to_sent"]),
        Summary.of("sending in the switch", inline["record_to_sent"]) if inline else None,
        notes="queue wait, head, eth_call on pending, nonce, sign, ledger commit, submit"))
    results.append(Comparison(
        "executor switch: its work per Action", "ms",
        Summary.of("syndicate accept()", ours["accept_ms"]),
        Summary.of("sending in the switch: all of it", inline["record_to_sent"]) if inline else None,
        notes="with the thread the switch only accepts; before, it ran record → sent"))
    for name, ms in ours["phases"].items():
        results.append(Comparison(f"executor step {name}", "ms", Summary.of(f"syndicate {name}", ms),
                                  None))
        if name == "wait":      # by what the sending thread was doing when the job came
            for doing, w in sorted(ours["wait_behind"].items()):
                results.append(Comparison(f"executor step wait, the thread {doing}", "ms",
                                          Summary.of(f"syndicate wait ({doing})", w), None))
    for s in STAGES:
        b = base["stages"].get(s) if base else None
        results.append(Comparison(f"stage {s}", "ms", Summary.of(f"syndicate {s}", ours["stages"][s]),
                                  Summary.of(f"web3.py {s}", b) if b else None))

    def rate(r):
        return {"sent": r["sent"], "landed": r["landed"], "landed_profitable": r["profitable"],
                "reverted": r["reverted"], "success_rate": round(r["profitable"] / r["sent"], 4)
                if r["sent"] else None, "refused": r["refused"], "final_states": r["states"],
                "load1": round(r["load1"], 2)}
    extra = {"ours": {**rate(ours), "swaps": ours["swaps"], "executor": ours["summary"]},
             "host": host_info()}
    if base:
        extra["baseline"] = {**rate(base), "swaps": base["swaps"]}
    if inline:
        extra["in_switch"] = {**rate(inline), "swaps": inline["swaps"]}
    return {"results": results, "extra": extra}
