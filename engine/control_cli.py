"""`syndicate ctl` (signals by pid) and `syndicate status` (shared memory, read-only).

ctl finds pids in the run directory (state_dir/run/<name>/roles/<role>.pid), checks that each
is alive and really a role of this engine (its /proc cmdline says "syndicate: <role>"), and sends
the signal from engine/core/signals.py's table.  status attaches /syn.<name>.control and reads
it: no role is signalled, locked or slowed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import orjson
import posix_ipc

from . import config as config_mod
from .core.control import ControlBlock
from .core.signals import ROLE_ACTIONS, signame
from .core.status import report


def live_roles(name: str) -> tuple[bool, set[str]]:
    """(whether the engine's supervisor runs, the roles alive now), from shared memory."""
    try:
        cb = ControlBlock.attach(name)
    except (posix_ipc.ExistentialError, ValueError):
        return False, set()
    try:
        doc = report(cb, name)
        return doc["running"], {r["name"] for r in doc["roles"] if r["alive"]}
    finally:
        cb.close()


def task_table(store_dir: Path, alive: set[str] = frozenset()) -> dict:
    """{role: {"checkpoint_age_s", "running", "tasks": {task: stats}}} from each role's last
    checkpoint, read-only (the engine may be running).  `running`: the role is alive now (one
    of `alive`); a task's `in_run` says a run was in progress when the checkpoint was taken."""
    from .core.store import ReadOnlyStore
    s = ReadOnlyStore.open(store_dir)
    out = {}
    try:
        with s.read() as r:
            roles = r.prefixes("tasks")
        for role in roles:
            rec = s.load_checkpoint(role)
            if not rec:
                continue
            out[role] = {"checkpoint_age_s": round((time.time_ns() - rec["time_ns"]) / 1e9, 1),
                         "running": role in alive,
                         "tasks": {t: {**{k: v for k, v in st.items() if k != "state"},
                                       **_summary(st.get("state"))}
                                   for t, st in rec.get("states", {}).items()}}
    finally:
        s.close()
    return out


def _summary(state) -> dict:
    """A task's own one-line account of what it found (`state["summary"]`), if it keeps one."""
    if isinstance(state, dict) and isinstance(state.get("summary"), str) and state["summary"]:
        return {"summary": state["summary"][:300]}
    return {}


def render_tasks(table: dict, engine: str = "", running: bool = True) -> str:
    """NOW is "running" for a run in progress in a live role; a role that is not running shows
    "stopped mid-run" for a run its last checkpoint caught in progress (it resumes on start)."""
    cols = ("ROLE", "TASK", "PRIO", "EVERY", "RUNS", "DONE%", "MEAN ms", "MISSED", "ERR", "NOW",
            "SAVED", "FOUND")
    rows = [cols]
    for role, rec in sorted(table.items()):
        for t, st in sorted(rec["tasks"].items()):
            rate = st.get("completion_rate")
            mean = st.get("mean_run_ms")
            rows.append((role, t, str(st.get("priority", "-")).lower(),
                         f"{st['interval']:g}s" if st.get("interval") else "continuous",
                         str(st.get("runs", 0)),
                         "-" if rate is None else f"{rate * 100:.0f}",
                         "-" if mean is None else f"{mean:.1f}",
                         str(st.get("missed_intervals", 0)), str(st.get("errors", 0)),
                         ("running" if rec.get("running", True) else "stopped mid-run")
                         if st.get("in_run") else "-",
                         f"{rec['checkpoint_age_s']:.0f}s ago",
                         _clip(st.get("summary") or "-", 90)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if not running:
        lines[:0] = [f"engine {engine!r} is not running: figures as of each role's last "
                     "checkpoint", ""]
    return "\n".join(lines)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="engine.toml (default ./engine.toml)")
    p.add_argument("--name", help="engine instance name (default: [engine] name)")


def _locate_or_exit(args, prog: str) -> config_mod.EnginePaths:
    """The engine's paths from -c/--name, or exit 2 with the reason (bad input)."""
    try:
        return config_mod.locate(args.config or "engine.toml", args.name,
                                 path_given=args.config is not None)
    except config_mod.ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(2)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def main_ctl(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="syndicate ctl", description=(
        "Send a role (or all roles) a control signal: " + ", ".join(
            f"{a} ({signame(s)})" for a, s in ROLE_ACTIONS.items())))
    _common(p)
    p.add_argument("role", help="a role name from engine.toml, or 'all'")
    p.add_argument("action", choices=sorted(ROLE_ACTIONS))
    args = p.parse_args(argv)
    where = _locate_or_exit(args, "syndicate ctl")
    name, run_dir = where.name, where.run_dir
    roles_dir = run_dir / "roles"
    if not (run_dir / "supervisor.pid").exists():
        print(f"syndicate ctl: engine {name!r} is not running (no {run_dir}/supervisor.pid)",
              file=sys.stderr)
        return 1
    pids = {f.stem: int(f.read_text().strip() or 0) for f in roles_dir.glob("*.pid")}
    if args.role == "all":
        targets = sorted(pids)
    elif args.role in pids:
        targets = [args.role]
    else:
        print(f"syndicate ctl: no running role {args.role!r} in engine {name!r} "
              f"(running: {', '.join(sorted(pids)) or 'none'})", file=sys.stderr)
        return 2
    sig = ROLE_ACTIONS[args.action]
    rc = 0
    for role in targets:
        pid = pids[role]
        if f"syndicate: {role}" not in _cmdline(pid):
            print(f"{role}: pid {pid} is not running as 'syndicate: {role}' (stale pid file?)",
                  file=sys.stderr)
            rc = 1
            continue
        try:
            os.kill(pid, sig)
            print(f"{role}: {args.action} ({signame(sig)}) sent to pid {pid}")
        except ProcessLookupError:
            print(f"{role}: pid {pid} is gone", file=sys.stderr)
            rc = 1
    return rc


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _fmt_us(v) -> str:
    return "-" if v is None else (f"{v:.0f}" if v >= 10 else f"{v:.1f}")


def _fmt_uptime(s) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


GUIDE_SHORT = {"switch_success": ("switch success", "%"), "state_save_success": ("state saves", "%"),
               "knowledge_retention": ("retention", "%"),
               "task_completion_rate": ("tasks done", "%"), "avg_task_ms": ("task", " ms"),
               "discoveries_per_hour": ("discoveries", "/h"),
               "response_ms_p99": ("response p99", " ms"), "decision_ms_p99": ("decision p99", " ms")}


def guide_line(g: dict) -> str:
    """The guide's success metrics on one line, each with its goal; a missed one says so."""
    from .core.status import GUIDE
    parts = []
    for key, (label, unit) in GUIDE_SHORT.items():
        v = g.get(key)
        if v is None:
            continue
        op, goal, _ = GUIDE[key]
        fmt = (lambda x: f"{x * 100:.2f}%".replace(".00%", "%")) if unit == "%" else \
            (lambda x: f"{x:g}{unit}")
        parts.append(f"{label} {fmt(v)}" + ("" if (g.get("met") or {}).get(key) else
                                              f" (MISSED: goal {op} {fmt(goal)})"))
    return "guide: " + ", ".join(parts) if parts else ""


def render(doc: dict) -> str:
    head = (f"engine {doc['engine']}  supervisor pid {doc['supervisor_pid']} "
            f"{'running' if doc['running'] else 'NOT RUNNING'}  up {_fmt_uptime(doc['uptime_s'])}")
    cols = ("ROLE", "PID", "STATE", "TASK", "UP", "RST", "PRIVATE", "CPU%", "SWITCHES",
            "SW p50µs", "SW p99µs", "EFF")
    rows = [cols]
    for r in doc["roles"]:
        lat = r["latency_us"]["switch"]
        state = r["state"] + ("*" if r["shedding"] else "")
        rows.append((r["name"], str(r["pid"] or "-"), state, r["task"] or "-",
                     _fmt_uptime(r["uptime_s"]), str(r["restarts"]),
                     _fmt_bytes(r["private_bytes"]), f"{r['cpu_percent']:.0f}",
                     str(r["switches"]), _fmt_us(lat["p50"]), _fmt_us(lat["p99"]),
                     "-" if r["efficiency"] is None else f"{r['efficiency'] * 100:.0f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = [head, ""] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                          for row in rows]
    notes = []
    if any(not r["boost"] for r in doc["roles"]):
        notes.append("boost off: interrupts wait for the scheduler (see README)")
    if any(r["shedding"] for r in doc["roles"]):
        notes.append("* shedding load (soft memory limit)")
    wd = doc.get("watchdog") or {}
    if wd.get("mean_cost_us"):
        notes.append(f"watchdog pass: {wd['mean_cost_us']:.0f} µs CPU mean, "
                     f"{wd['max_cost_us']:.0f} µs max")
    for r in doc["roles"]:
        summary = (r.get("info") or {}).get("summary")
        if summary:
            notes.append(f"{r['name']}: {summary}")
    line = guide_line(doc.get("guide") or {})
    if line:
        notes.append(line)
    lost = sum(r["events_lost"] for r in doc["roles"])
    if lost:
        notes.append(f"{lost} events lost by lagging readers")
    failed = {r["name"]: r["task_errors"] for r in doc["roles"] if r["task_errors"]}
    if failed:
        notes.append("background task failures: " + ", ".join(
            f"{n} {k}" for n, k in failed.items()) + " (`status --tasks` and the log say which)")
    return "\n".join(lines + ([""] + notes if notes else []))


def main_status(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="syndicate status", description=(
        "Show every role, read from shared memory without signalling any of them.  --json "
        "prints the stable document described in engine/core/status.py."))
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", nargs="?", const=1.0, type=float, metavar="SECONDS",
                   help="refresh every SECONDS (default 1) until Ctrl-C")
    p.add_argument("--tasks", action="store_true", help=(
        "per task: runs, completion rate, mean duration, missed intervals, errors — from each "
        "role's last checkpoint in the store (read-only; `ctl all checkpoint` refreshes it)"))
    args = p.parse_args(argv)
    where = _locate_or_exit(args, "syndicate status")
    name = where.name
    if args.tasks:   # from the store: works (and exits 0) whether the engine runs or not
        from .core.store import StoreError
        running, alive = live_roles(name)
        try:
            table = task_table(where.store_path, alive)
        except StoreError as e:
            print(f"syndicate status: {e}", file=sys.stderr)
            return 2
        print(orjson.dumps(table).decode() if args.json else render_tasks(table, name, running))
        return 0
    try:
        cb = ControlBlock.attach(name)
    except posix_ipc.ExistentialError:
        print(f"syndicate status: engine {name!r} is not running "
              f"(no shared memory {ControlBlock.segment_name(name)})", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"syndicate status: {e}", file=sys.stderr)
        return 2
    try:
        while True:
            doc = report(cb, name, where.run_dir)
            if args.json:
                sys.stdout.write(orjson.dumps(doc).decode() + "\n")
            else:
                if args.watch:
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(render(doc))
            sys.stdout.flush()
            if not args.watch:
                return 0 if doc["running"] else 1   # what is left of a killed engine: 1
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
    finally:
        cb.close()
