"""`syndicate bench switch`: the atomic switch measured with every role busy, beside a Queue.

Ours: a real engine (`syndicate run`, its own session, a temporary state dir): three synthetic
sources (one per chain, SCHED_FIFO) publish swap events into their rings and interrupt the
chain's agent; the agent's decision interrupts the executor.  All five roles run the CPU-bound
`checksum` task the whole time.  Every decision record carries the CLOCK_MONOTONIC stamps the
role took (sent, seen, handling, decided, and the event's written), read back from the
out.<role> rings by this process, so the percentiles are exact, not histogram estimates.

Baseline, same run, same machine: the naive design — one process per role, its main thread
blocked in multiprocessing.Queue.get() while a background thread does the same checksum work;
a sender process (at the same FIFO priority as our sources) puts events; the agent puts its
decision on the executor's queue.  "sent → handling" is put → get returned.

    syndicate bench switch [--events 10000] [--rate 200] [--repeat N] [--json] [--no-baseline]
                           [--boost off] [--research] [--checksum off]

--research: the agents are the guide's kinds (Spotter, Analyst, Specialist) running their
research plan (roles/research PLAN) every second instead of every 1-15 minutes, over JSON-RPC
to a three-chain anvil devnet this starts and stops, beside the checksum.  The events stay
synthetic (the sources write no pool-graph snapshots, so the graph tasks have no graph and
make no runs; the RPC ones — gas trend, block timing, MEV watch — do their real work).

--checksum off: no role runs the checksum (with --research: the real tasks are the only
background work; without: the roles sleep between events).  Each run prints the CPU the
roles used while it measured (user + system seconds ÷ wall seconds, in cores).
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from ..config import render
from ..core.wiring import stop_engine
from .report import Comparison, Summary, emit, host_info

CHAINS = ("arbitrum", "base", "polygon")
AGENTS = {"arbitrum": "arbitrum-spotter", "base": "base-analyst", "polygon": "polygon-specialist"}
BUSY = {"checksum": {"interval": 0.0, "options": {"links_per_run": 1_000_000}}}
# --research: the guide's kinds, their research plan (roles/research PLAN) run every second
# against a devnet instead of every 1-15 minutes, beside the checksum
RESEARCH = {"arbitrum": ("roles.agents:Spotter", ("gas-trend", "sequencer-timing", "mev-watch",
                                                  "liquidity-map")),
            "base": ("roles.agents:Analyst", ("fee-structure", "op-stack-metrics",
                                              "cross-dex-liquidity")),
            "polygon": ("roles.agents:Specialist", ("gas-volatility", "block-times",
                                                    "bridge-gaps"))}
RESEARCH_OPTIONS = {"sequencer-timing": {"blocks": 6}, "op-stack-metrics": {"blocks": 6},
                    "block-times": {"blocks": 6}, "mev-watch": {"blocks": 50}}


IDLE = {"checksum": {"enabled": False}}


def _agent(chain: str, manifest: str | None, busy: dict = BUSY) -> dict:
    if manifest is None:
        return {"kind": "roles.agents:Agent", "chains": [chain], "tasks": busy}
    kind, names = RESEARCH[chain]
    tasks = {**busy, "share-research": {"interval": 1.0},
             **{n: {"interval": 1.0, **({"options": RESEARCH_OPTIONS[n]}
                                        if n in RESEARCH_OPTIONS else {})} for n in names}}
    return {"kind": kind, "chains": [chain], "tasks": tasks}


def _toml(name: str, state: Path, rate_per_chain: float, counts: list[int], slots: int,
          boost: str = "fifo", manifest: str | None = None, checksum: bool = True) -> str:
    roles = {}
    busy = BUSY if checksum else IDLE
    for c, count in zip(CHAINS, counts):
        roles[f"monitor-{c}"] = {"kind": "roles.monitor:SyntheticSource", "chains": [c],
                                 "options": {"rate": rate_per_chain, "count": count}}
        roles[AGENTS[c]] = _agent(c, manifest, busy)
    roles["flash-loan-executor"] = {"kind": "roles.agents:Executor", "chains": list(CHAINS),
                                    "subscribe": False, "inbox": "interrupt", "tasks": busy}
    roles["alphago-coordinator"] = {"kind": "roles.agents:Coordinator", "chains": ["arbitrum"],
                                    "subscribe": False, "tasks": busy}
    doc = {"engine": {"name": name, "state_dir": str(state), "log_level": "warning"},
           "rings": {"event_slots": slots, "inbox_slots": slots},
           "supervisor": {"max_restarts": 0}, "switch": {"boost": boost}, "roles": roles}
    if manifest is not None:
        doc["chains"] = {"manifest": manifest}
    return render(doc)


def _cpu_s(pids) -> float:
    """User + system CPU seconds of the live processes among `pids` (/proc/PID/stat)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def run_ours(events: int, rate: float, progress, boost: str = "fifo",
             manifest: str | None = None, checksum: bool = True) -> dict:
    from engine.core.control import ControlBlock
    from engine.core.ring import Ring
    from engine.core.status import report

    name = f"bench{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="syndicate-bench-"))
    counts = [events // len(CHAINS) + (1 if i < events % len(CHAINS) else 0)
              for i in range(len(CHAINS))]
    per_chain = max(counts)
    slots = 1 << max(12, (per_chain * 2).bit_length())
    cfg = tmp / "engine.toml"
    cfg.write_text(_toml(name, tmp / "state", rate / len(CHAINS), counts, slots, boost, manifest,
                         checksum))
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    rings, readers = {}, {}
    samples = {"agent": [], "executor": []}
    try:
        deadline = time.monotonic() + 30
        cb = None
        while time.monotonic() < deadline:
            try:
                cb = ControlBlock.attach(name)
                rs = report(cb, name)["roles"]
                if len(rs) == 8 and all(r["alive"] and r["state"] not in ("starting",) for r in rs):
                    t_ready = time.monotonic_ns()
                    pids = [r["pid"] for r in rs if r["pid"]]
                    cpu0 = _cpu_s(pids)
                    break
                cb.close()
                cb = None
            except Exception:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"engine exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        if cb is None:
            raise RuntimeError("engine did not start within 30 s")
        for role in (*AGENTS.values(), "flash-loan-executor"):
            rings[role] = Ring.attach(f"/syn.{name}.out.{role}")
            readers[role] = rings[role].reader(31, start="oldest")
        want = sum(counts)
        got = {"agent": 0, "executor": 0}
        lost = 0
        t_end = time.monotonic() + per_chain / (rate / len(CHAINS)) + 60
        while (got["agent"] < want or got["executor"] < want) and time.monotonic() < t_end:
            for role, rd in readers.items():
                b = rd.poll(4096)
                lost += b.lost
                kind = "executor" if role == "flash-loan-executor" else "agent"
                for raw in b.records:
                    d = orjson.loads(raw)
                    if d.get("kind") == "research":   # --research: block timing, not a decision
                        continue
                    samples[kind].append(d)
                    got[kind] += 1
            progress(got["agent"], want)
            time.sleep(0.05)
        cpu = (_cpu_s(pids) - cpu0) / max(1e-9, (time.monotonic_ns() - t_ready) / 1e9)
        doc = report(cb, name, tmp / "state" / "run" / name)   # with each role's status info
        cb.close()
        # Events the sources wrote before every role had started measure the start-up (a
        # role's first switch waits for the role to exist), not the switch: counted, left out.
        warm = {k: [d for d in v if (d.get("t_origin") or 0) >= t_ready]
                for k, v in samples.items()}
        excluded = {k: len(samples[k]) - len(warm[k]) for k in samples}
        return {"samples": warm, "lost": lost, "status": doc, "want": want,
                "warmup_excluded": excluded, "cpu_cores": round(cpu, 3)}
    finally:
        for rd in readers.values():
            pass
        for r in rings.values():
            try:
                r.close()
            except Exception:
                pass
        stop_engine(proc, name, 20)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ baseline
def _busy_thread(stop: threading.Event) -> None:
    d = b"syndicate"
    while not stop.is_set():
        for _ in range(16):
            d = hashlib.blake2b(d, digest_size=32).digest()


def _baseline_agent(inq, outq) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 10)   # the same nice as our background work
    stop = threading.Event()
    threading.Thread(target=_busy_thread, args=(stop,), daemon=True).start()
    while True:
        ev = inq.get()
        if ev is None:
            outq.put(None)
            break
        t_handling = time.monotonic_ns()
        d = {"kind": "assessment", "event": ev["id"], "impact_bps": ev["impact_bps"],
             "verdict": "candidate", "t_event": ev["t_written"], "t_handling": t_handling}
        d["t_decided"] = time.monotonic_ns()
        outq.put(d)
    stop.set()


def _baseline_executor(inq, resq, n_agents: int) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 10)
    stop = threading.Event()
    threading.Thread(target=_busy_thread, args=(stop,), daemon=True).start()
    done = 0
    while done < n_agents:
        d = inq.get()
        if d is None:
            done += 1
            continue
        t_handling = time.monotonic_ns()
        resq.put({"agent": d, "exec": {"t_event": d["t_decided"], "t_handling": t_handling,
                                       "t_decided": time.monotonic_ns()}})
    resq.put(None)
    stop.set()


def _baseline_idle_busy(stop_ev) -> None:
    os.setpriority(os.PRIO_PROCESS, 0, 10)
    d = b"x"
    while not stop_ev.is_set():
        for _ in range(64):
            d = hashlib.blake2b(d, digest_size=32).digest()


def run_baseline(events: int, rate: float, progress) -> dict:
    ctx = mp.get_context("fork")
    agent_qs = [ctx.Queue() for _ in CHAINS]
    exec_q, res_q = ctx.Queue(), ctx.Queue()
    stop_ev = ctx.Event()
    procs = [ctx.Process(target=_baseline_agent, args=(q, exec_q), daemon=True) for q in agent_qs]
    procs.append(ctx.Process(target=_baseline_executor, args=(exec_q, res_q, len(CHAINS)),
                             daemon=True))
    procs.append(ctx.Process(target=_baseline_idle_busy, args=(stop_ev,), daemon=True))
    samples = {"agent": [], "executor": []}
    try:
        for p in procs:
            p.start()
        time.sleep(0.5)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
        except OSError:
            pass
        period = 1.0 / rate
        nxt = time.monotonic()
        for i in range(events):
            nxt += period
            while True:
                dt = nxt - time.monotonic()
                if dt <= 0:
                    break
                time.sleep(dt)
            q = agent_qs[i % len(CHAINS)]
            q.put({"id": i, "impact_bps": 75.0, "t_written": time.monotonic_ns()})
            if i % 200 == 0:
                progress(i, events)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        for q in agent_qs:
            q.put(None)
        while True:
            r = res_q.get(timeout=60)
            if r is None:
                break
            a, e = r["agent"], r["exec"]
            samples["agent"].append({"t_event": a["t_event"], "t_sent": a["t_event"],
                                     "t_handling": a["t_handling"], "t_decided": a["t_decided"]})
            samples["executor"].append({"t_event": e["t_event"], "t_sent": e["t_event"],
                                        "t_origin": a["t_event"],
                                        "t_handling": e["t_handling"],
                                        "t_decided": e["t_decided"]})
        return {"samples": samples}
    finally:
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            pass
        stop_ev.set()
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)


def _us(samples, a, b) -> list[float]:
    return [(d[b] - d[a]) / 1000.0 for d in samples if d.get(a) and d.get(b) and d[b] >= d[a]]


# What issue 9 holds the switch to, in every run (µs): the figure, the percentile, the bound.
GOALS = (("agent", "p99", 250.0), ("agent", "p99_9", 1000.0),
         ("executor", "p99", 250.0), ("executor", "p99_9", 1000.0),
         ("two switches", "p99", 600.0))


def measure(args, progress) -> tuple[list[Comparison], dict, dict]:
    """One run: ours, then the baseline.  Returns the comparisons, the extra facts, and the
    three headline figures {"agent"|"executor"|"two switches": (ours, baseline)}."""
    ours = run_ours(args.events, args.rate, progress("syndicate"), args.boost,
                    getattr(args, "manifest", None), getattr(args, "checksum", "on") == "on")
    base = None if args.no_baseline else run_baseline(args.events, args.rate,
                                                      progress("baseline"))
    res, heads = [], {}
    for kind, label in (("agent", "agent (event ring)"), ("executor", "executor (inbox)")):
        o = ours["samples"][kind]
        b = base["samples"][kind] if base else None
        for a, z, what in (("t_sent", "t_handling", "signal sent → handling started"),
                           ("t_event", "t_decided", "event written → decision written")):
            ob = _us(o, a, z)
            bb = _us(b, a, z) if b else None
            res.append(Comparison(
                f"{what}, {label}", "us", Summary.of(
                    "syndicate (ring + RT signal" + (" + boost)" if args.boost == "fifo"
                                                     else ", boost off)"), ob),
                Summary.of("multiprocessing.Queue, blocking get", bb) if bb else None))
            if a == "t_sent":
                heads[kind] = (res[-1].ours, res[-1].baseline)
        res.append(Comparison(f"signal sent → signal seen, {label}", "us",
                              Summary.of("syndicate", _us(o, "t_sent", "t_seen"))))
    ob = _us(ours["samples"]["executor"], "t_origin", "t_decided")
    bb = _us(base["samples"]["executor"], "t_origin", "t_decided") if base else None
    res.append(Comparison("swap event written → executor's decision written (two switches)", "us",
                          Summary.of("syndicate", ob),
                          Summary.of("multiprocessing.Queue", bb) if bb else None))
    heads["two switches"] = (res[-1].ours, res[-1].baseline)
    roles = ours["status"]["roles"]
    eff = {r["name"]: r["efficiency"] for r in roles if r["efficiency"] is not None}
    extra = {"events_wanted": ours["want"], "agent_decisions": len(ours["samples"]["agent"]),
             "executor_decisions": len(ours["samples"]["executor"]),
             "warmup_excluded": ours["warmup_excluded"],
             "bench_reader_lost": ours["lost"],
             "switches": {r["name"]: r["switches"] for r in roles},
             "coalesced": {r["name"]: r["coalesced"] for r in roles},
             "late_saves": {r["name"]: r["late_saves"] for r in roles},
             "events_lost": {r["name"]: r["events_lost"] for r in roles},
             "background_efficiency": eff,
             "roles_cpu_cores": ours["cpu_cores"],   # the 8 roles' CPU while measuring
             # the guide's switch success and state saves over this run (engine/core/status)
             "guide": {k: ours["status"].get("guide", {}).get(k) for k in (
                 "switch_success", "state_save_success", "switches_broken", "late_saves")},
             "boost": all(r["boost"] for r in roles),
             "research": _research_runs(roles) if getattr(args, "manifest", None) else None,
             # the role's own histograms, phase by phase (SIGNAL, PAUSE, SAVE, ...): ±10 %
             "phases_us": {r["name"]: {k: (v["p50"], v["p99"]) for k, v in r["latency_us"].items()
                                       if v["n"] and k != "slice"}
                           for r in roles if r["switches"]}}
    return res, extra, heads


def _research_runs(roles: list[dict]) -> dict:
    """{role: {task: {"runs", "errors", "last_error"}}}: the research tasks' own counts, from
    each agent's status info (proof they ran during the measurement, or why not)."""
    return {r["name"]: (r.get("info") or {}).get("research") for r in roles
            if r["name"] in AGENTS.values()}


def _pct3(s: Summary | None) -> str:
    if s is None or not s.n:
        return f"{'-':>23}"
    return f"{s.p50:>7.0f}{s.p99:>8.0f}{s.p99_9:>8.0f}"


def repeat_table(runs: list[dict]) -> str:
    """Each run's p50 / p99 / p99.9 of the three headline figures beside the baseline of the
    same run, the worst of every column over the runs, and the goals."""
    head = (f"{'run':>4} {'load':>5}  {'figure':<14}{'ours p50':>9}{'p99':>8}{'p99.9':>8}"
            f"   {'Queue p50':>9}{'p99':>8}{'p99.9':>8}")
    out = ["syndicate bench switch: signal sent → handling started (agents, executor), swap "
           "event → executor's decision (two switches), µs", head]
    for i, r in enumerate(runs, 1):
        for fig, (o, b) in r["heads"].items():
            out.append(f"{i:>4} {r['load']:>5.2f}  {fig:<14}{_pct3(o)}   {_pct3(b)}")
        extra = r.get("extra") or {}
        if extra:
            eff = extra.get("background_efficiency") or {}
            out.append(f"{'':>4} {'':>5}  roles' CPU {extra.get('roles_cpu_cores')} cores, "
                       f"background efficiency min {min(eff.values()) if eff else '-'}")
    out.append("")
    verdict = []
    for fig in runs[0]["heads"]:
        qs = ("p50", "p99", "p99_9")
        worst = {q: max(getattr(r["heads"][fig][0], q) for r in runs) for q in qs}
        bases = [r["heads"][fig][1] for r in runs if r["heads"][fig][1] is not None]
        bw = {q: max(getattr(b, q) for b in bases) for q in qs} if bases else None
        out.append(f"{'worst':>4} {'':>5}  {fig:<14}{worst['p50']:>7.0f}{worst['p99']:>8.0f}"
                   f"{worst['p99_9']:>8.0f}   " + (f"{bw['p50']:>7.0f}{bw['p99']:>8.0f}"
                                                     f"{bw['p99_9']:>8.0f}" if bw else ""))
        for gf, q, bound in GOALS:
            if gf == fig:
                ok = worst[q] <= bound
                verdict.append(f"{fig} {q.replace('_', '.')} ≤ {bound:.0f}: "
                               f"{'met' if ok else 'NOT met'} (worst {worst[q]:.0f})")
    out.append("")
    out.append(f"goals over {len(runs)} run(s): " + "; ".join(verdict))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="syndicate bench switch", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=200.0, help="events per second, all chains")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="N runs in a row (each with its own baseline): each run's p50/p99/p99.9 "
                        "and the worst of them")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--boost", choices=("fifo", "off"), default="fifo",
                   help="off: measure the same engine without the SCHED_FIFO boost")
    p.add_argument("--checksum", choices=("on", "off"), default="on",
                   help="off: no role runs the checksum task (the research alone, or idle)")
    p.add_argument("--research", action="store_true",
                   help="the agents are the guide's Spotter/Analyst/Specialist running their "
                        "research plan every second against a devnet this starts (anvil)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if args.events < 30 or args.rate <= 0 or not 1 <= args.repeat <= 100:
        print("syndicate bench switch: --events >= 30, --rate > 0 and --repeat 1..100",
              file=sys.stderr)
        return 2

    def progress(label):
        last = [0.0]

        def f(done, total):
            if not args.json and time.monotonic() - last[0] > 2:
                last[0] = time.monotonic()
                print(f"  {label}: {done}/{total}", file=sys.stderr)
        return f

    args.manifest = None
    if args.research:
        return _with_devnet(args, lambda: _runs(args, progress))
    return _runs(args, progress)


def _with_devnet(args, run) -> int:
    """Start the three-chain devnet, point the engine's [chains] manifest at it, run, stop."""
    from engine.devnet import Devnet
    tmp = Path(tempfile.mkdtemp(prefix="syndicate-bench-devnet-"))
    net = None
    try:
        net = Devnet.start(CHAINS)
        args.manifest = str(net.write_manifest(tmp / "manifest.json"))
        return run()
    finally:
        if net is not None:
            net.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _runs(args, progress) -> int:
    if args.repeat == 1:
        res, extra, _ = measure(args, progress)
        emit("switch", res, args.json, extra)
        if args.manifest and not args.json:
            print(_research_line(extra["research"], args.checksum == "on"))
        return 0
    runs = []
    for i in range(args.repeat):
        if not args.json:
            print(f"  run {i + 1}/{args.repeat}", file=sys.stderr)
        load = os.getloadavg()[0]
        res, extra, heads = measure(args, progress)
        runs.append({"load": load, "heads": heads, "results": res, "extra": extra})
    if args.json:
        doc = {"bench": "switch", "repeat": args.repeat, "host": host_info(),
               "runs": [{"load": r["load"], "results": [c.as_dict() for c in r["results"]],
                         **r["extra"]} for r in runs]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(repeat_table(runs))
        if args.manifest:
            print(_research_line(runs[-1]["extra"]["research"], args.checksum == "on"))
    return 0


def _research_line(research: dict, checksum: bool = True) -> str:
    """One line per agent: how many runs each research task made in the last run, and errors."""
    out = [f"background: {'checksum + ' if checksum else ''}the research plan every 1 s on a "
           "devnet (runs/errors, last run):"]
    for role, tasks in (research or {}).items():
        out.append(f"  {role}: " + (", ".join(f"{n} {t.get('runs')}/{t.get('errors')}"
                                              for n, t in sorted((tasks or {}).items())) or "-"))
    return "\n".join(out)
