"""`syndicate bench detect`: a swap's log bytes on the socket → its pool record in the ring.

    anvil (devnet, one chain, automine) ◄── LeanTraffic: N small swaps at --rate, from here
      │ eth_subscription frames, to both subscribers at once (same node, same swaps)
      ├──► monitor-<chain>: the real ChainMonitor in a real engine (`syndicate run`, SCHED_FIFO)
      │      ws.py recv ─ t_origin ─► Follower ─► PoolBook.apply ─► record ─► events.<chain>
      │                                                   EventPublisher stamps t_written ─┐
      │    this process: a Ring reader of events.<chain> collects the records ◄────────────┘
      │      ours = t_written − t_origin, both CLOCK_MONOTONIC ns, taken in the monitor
      └──► baseline process: AsyncWeb3 + WebSocketProvider, process_subscriptions, process_log
             baseline = bytes received by `websockets` → decoded event (engine/bench/detect_web3.py)

Both subscribers run at the same time on the same swaps; the baseline process is given the
monitor's scheduling policy and priority (read from the monitor's pid), so the comparison is of
the code path, not of the scheduler.  One record per swap: a V2 swap's Sync record (its Swap
log is folded into it) and a V3 Swap record; the baseline's figure is taken on the same logs
(it also decodes the V2 Swap logs, as a user would, which are not counted).

Every run counts the swaps sent, the transactions that reverted, the records ours published
for them (exactly one per swap is expected) and the events the baseline decoded; the JSON has
them under "runs".  With --stages a second pass drives the same Follower, PoolBook and ring
publish in a child process with a stamp per stage (engine/bench/detect_stages.py).

Each run (and the stages pass) has a devnet of its own, started afresh: anvil slows down as its
chain grows.  The load (os.getloadavg) at the end of each run is printed beside it.

    syndicate bench detect [--swaps 5000] [--rate 100] [--repeat N] [--json] [--no-baseline]
                           [--stages] [--chain base] [--seed 1]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
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
from .report import Comparison, Summary, emit, host_info

CHAINS = ("arbitrum", "base", "polygon")


def _toml(name: str, state: Path, chain: str, manifest: Path, slots: int) -> str:
    return render({"engine": {"name": name, "state_dir": str(state), "log_level": "warning"},
                   "rings": {"event_slots": slots},
                   "supervisor": {"max_restarts": 0},
                   "chains": {"manifest": str(manifest)},
                   "roles": {f"monitor-{chain}": {"kind": "roles.monitor:ChainMonitor",
                                                  "chains": [chain]}}})


class _Engine:
    """A real engine with one chain monitor, in its own session; everything undone in close()."""

    def __init__(self, tmp: Path, chain: str, manifest: Path, slots: int):
        self.name = f"benchdetect{os.getpid()}"
        self.chain = chain
        cfg = tmp / "engine.toml"
        cfg.write_text(_toml(self.name, tmp / "state", chain, manifest, slots))
        self.info_path = tmp / "state" / "run" / self.name / "roles" / f"monitor-{chain}.info.json"
        self.pid_path = tmp / "state" / "run" / self.name / "roles" / f"monitor-{chain}.pid"
        self.err = tmp / "engine.stderr"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

    def info(self) -> dict:
        try:
            return orjson.loads(self.info_path.read_bytes())["chains"][self.chain]
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def wait_following(self, timeout: float = 60.0) -> int:
        """The monitor's pid once it follows its node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited ({self.proc.returncode}): "
                                   f"{self.err.read_text(errors='replace')[-2000:]}")
            if (self.info().get("follower") or {}).get("active"):
                return int(self.pid_path.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"the monitor did not follow its node within {timeout:g} s: "
                           f"{self.info().get('summary')!r} "
                           f"{self.err.read_text(errors='replace')[-2000:]}")

    def close(self) -> None:
        stop_engine(self.proc, self.name, 20)


class _Baseline:
    """The web3 subscriber process (engine/bench/detect_web3.py)."""

    def __init__(self, ws_url: str, pools: list[str], sched):
        from . import detect_web3
        ctx = mp.get_context("spawn")     # a clean interpreter: nothing of ours imported
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=detect_web3.main, args=(child, ws_url, pools, sched),
                                daemon=True)
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.conn.poll(timeout):
            raise RuntimeError("the web3 baseline did not subscribe in time")
        msg = self.conn.recv()
        if msg != "ready":
            raise RuntimeError(f"the web3 baseline failed: {msg.get('error', msg)}")

    def finish(self, timeout: float = 120.0) -> dict:
        self.conn.send("stop")
        if not self.conn.poll(timeout):
            raise RuntimeError("the web3 baseline did not finish in time")
        out = self.conn.recv()
        if "error" in out:
            raise RuntimeError(f"the web3 baseline failed: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _sched_of(pid: int):
    try:
        return os.sched_getscheduler(pid), os.sched_getparam(pid).sched_priority
    except OSError:
        return None


def run_once(net, chain: str, swaps: int, rate: float, seed: int, baseline: bool,
             progress) -> dict:
    from engine.core.ring import Ring
    from engine.core.wiring import MAX_ROLES
    from engine.devnet.lean import LeanTraffic

    tmp = Path(tempfile.mkdtemp(prefix="syndicate-bench-detect-"))
    manifest = net.write_manifest(tmp / "manifest.json")
    c = net.manifest["chains"][chain]
    pools = [p["address"] for p in c["pools"]]
    slots = 1 << max(12, (swaps * 2).bit_length())
    eng = _Engine(tmp, chain, manifest, slots)
    base = ring = reader = None
    lean = LeanTraffic(net.manifest, chain, seed=seed)
    records: list[dict] = []
    try:
        monitor_pid = eng.wait_following()
        sched = _sched_of(monitor_pid)
        if baseline:
            base = _Baseline(c["ws_url"], pools, sched)
            base.wait_ready()
        ring = Ring.attach(f"/syn.{eng.name}.events.{chain}")
        reader = ring.reader(MAX_ROLES - 1, start="latest")
        lost = 0

        def drain() -> None:
            nonlocal lost
            while True:
                b = reader.poll(4096)
                lost += b.lost
                records.extend(orjson.loads(r) for r in b.records)
                if len(b.records) < 4096:
                    return

        sent: list[str] = []
        t0 = time.monotonic()
        for i in range(swaps):
            sent.append(lean.step())
            if i % 32 == 0:
                drain()
                progress(i, swaps)
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
        lean.settle()
        failed = set(lean.failed(sent))
        want = {t for t in sent if t not in failed}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            drain()
            if len({r["tx"] for r in records if r.get("tx") in want}) >= len(want):
                break
            time.sleep(0.05)
        base_out = base.finish() if base is not None else None
        info = eng.info()
    finally:
        lean.close()
        if base is not None:
            base.close()
        if ring is not None:
            ring.close()
        eng.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return _tally(sent, failed, want, records, lost, base_out, sched, elapsed, info)


def _tally(sent, failed, want, records, lost, base_out, sched, elapsed, info) -> dict:
    mine = [r for r in records if r.get("type") == "pool" and r.get("tx") in want]
    per_tx: dict[str, int] = {}
    for r in mine:
        per_tx[r["tx"]] = per_tx.get(r["tx"], 0) + 1
    ours = {(r["tx"], r["log_index"]): (r["t_written"] - r["t_origin"]) / 1e3 for r in mine}
    run = {"swaps": len(sent), "reverted": len(failed), "elapsed_s": round(elapsed, 2),
           "rate": round(len(sent) / elapsed, 1) if elapsed else None,
           "records": len(mine), "swaps_with_one_record": sum(1 for n in per_tx.values() if n == 1),
           "swaps_without_record": len(want) - len(per_tx),
           "swaps_with_several": sum(1 for n in per_tx.values() if n > 1), "ring_lost": lost,
           "monitor_sched": list(sched) if sched else None,
           "monitor": {k: (info.get("follower") or {}).get(k) for k in
                       ("logs", "records", "dropped", "bad", "errors", "reconnects", "backfilled")},
           "load1": os.getloadavg()[0], "ours_us": sorted(ours.values()),
           "series_us": sorted((r["t_origin"], (r["t_written"] - r["t_origin"]) / 1e3)
                               for r in mine)}
    if base_out is not None:
        got = {(tx, i): (t_dec - t_recv) / 1e3 for tx, i, _, t_recv, t_dec in base_out["samples"]}
        same = [got[k] for k in ours if k in got]
        run.update(baseline_events=len(base_out["samples"]), baseline_frames=base_out["frames"],
                   baseline_matched=len(same), baseline_sched=base_out["sched"],
                   baseline_us=sorted(same))
    return run


def _worst(runs: list[dict], key: str) -> Summary | None:
    sums = [Summary.of(f"run {i + 1}", r[key]) for i, r in enumerate(runs) if r.get(key)]
    return max(sums, key=lambda s: s.p99) if sums else None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="syndicate bench detect", description=__doc__.split("\n")[0])
    ap.add_argument("--swaps", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=100.0, help="swaps per second (default 100)")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the worst (by p99) is shown")
    ap.add_argument("--chain", default="base", choices=CHAINS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--stages", action="store_true",
                    help="also a pass with a stamp per stage (recv, parsed, applied, published)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.swaps < 1 or args.rate <= 0 or args.repeat < 1:
        print("syndicate bench detect: --swaps, --rate and --repeat must be positive",
              file=sys.stderr)
        return 2
    from engine.chain.contracts import toolchain_missing
    missing = toolchain_missing()
    if missing:
        print(f"syndicate bench detect: {missing}", file=sys.stderr)
        return 2
    from engine.devnet import Devnet

    def _stop(signum, frame):     # SIGTERM/SIGHUP unwind like Ctrl-C: every finally runs
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)

    def progress(i, n):
        if not args.json and sys.stderr.isatty():
            print(f"\r  {i}/{n} swaps", end="", file=sys.stderr, flush=True)

    runs, stages = [], None
    for k in range(args.repeat + (1 if args.stages else 0)):
        # A fresh devnet per run: anvil mines ~7x slower after ~600 blocks unless it keeps
        # old states in memory only (--prune-history), and still slows down as its chain
        # grows (180 → 30 blocks/s after 15 000 blocks here).
        with Devnet.start((args.chain,), seed=0, anvil_args=("--prune-history", "256")) as net:
            if k == args.repeat:
                from .detect_stages import run_stages
                stages = run_stages(net, args.chain, args.swaps, args.rate, args.seed)
                break
            run = run_once(net, args.chain, args.swaps, args.rate, args.seed + k,
                           not args.no_baseline, progress)
        runs.append(run)
        if not args.json:
            print(f"\rrun {k + 1}: {_line(run)}", file=sys.stderr, flush=True)
    ours, base = _worst(runs, "ours_us"), _worst(runs, "baseline_us")
    ours.label = f"syndicate monitor ({ours.label} of {len(runs)})"
    if base is not None:
        base.label = f"web3 AsyncWeb3 + process_log ({base.label})"
    results = [Comparison(
        "detect: log bytes received → pool record in the ring", "us", ours, base,
        notes="worst run by p99; baseline: bytes received by websockets → decoded event")]
    extra = {"runs": [{k: v for k, v in r.items() if not k.endswith("_us")} |
                      {"ours": vars(Summary.of("ours", r["ours_us"]))} |
                      ({"baseline": vars(Summary.of("baseline", r["baseline_us"]))}
                       if r.get("baseline_us") else {}) for r in runs],
             "goal_p99_us": 1000.0, "goal_met": ours.p99 <= 1000.0}
    if stages is not None:
        extra["stages_us"] = stages
    if args.json:
        emit("detect", results, True, extra)
    else:
        emit("detect", results, False)
        print(f"goal p99 <= 1000 us: {'met' if extra['goal_met'] else 'NOT met'} "
              f"(ours p99 {ours.p99:.0f} us); host {host_info()['cpus']} cpus")
        for i, r in enumerate(runs):
            print(f"run {i + 1}: {_line(r)}")
        if stages is not None:
            from .detect_stages import render_stages
            print(render_stages(stages))
    return 0


def _line(r: dict) -> str:
    o = Summary.of("", r["ours_us"])
    s = (f"{r['swaps']} swaps ({r['reverted']} reverted) at {r['rate']}/s, {r['records']} records "
         f"({r['swaps_without_record']} swaps without, {r['swaps_with_several']} with several), "
         f"load {r['load1']:.2f}; ours p50/p99/p99.9 {o.p50:.0f}/{o.p99:.0f}/{o.p99_9:.0f} us")
    if r.get("baseline_us"):
        b = Summary.of("", r["baseline_us"])
        s += (f"; web3 {b.p50:.0f}/{b.p99:.0f}/{b.p99_9:.0f} us on {r['baseline_matched']} "
              f"of the same logs ({r['baseline_events']} decoded)")
    return s
