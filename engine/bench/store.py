"""`syndicate bench store [--json] [--quick] [-n N]`: checkpoint latency in LMDB vs sqlite WAL and fsync'd JSON.

    parent ── fork ──► 1 role process   ─┐  each: open its own store in a temp dir, then N saves of
           ── fork ──► 5 role processes ─┘  the same ~1 KiB state (8 tasks), a pause between saves
                       (started together)    (roles do not save back to back); latencies back by pipe

For each durability setting (process, periodic, power) it measures Checkpointer.save with a
generous budget (so the figure is the full commit latency) for one role and for five roles saving
at once into one environment, and, at the default setting, the switch path itself: save() with a
300 µs budget (how long the switch was held, how many saves went on late).  Baselines, same
state, same processes, same run: sqlite3 in WAL mode (synchronous=NORMAL, the crash-safe
equivalent of "process"; synchronous=FULL for "power") and a JSON file written, fsync'd and
renamed into place (for "power").  Temp dirs and children are removed on every exit path.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time

import orjson

from engine.bench.report import Comparison, Summary, emit
from engine.core.checkpoint import Checkpointer
from engine.core.store import Store

ROLES = ["arbitrum-spotter", "base-analyst", "polygon-specialist", "flash-loan-executor",
         "alphago-coordinator"]
PAUSE_S = 0.0005


def _state(i: int) -> dict:
    return {f"task{t}": {"cursor": i, "weights": [(i * 7 + t * 13 + k) % 997 for k in range(20)],
                         "name": f"background-task-{t}", "pools": [f"0x{t:040x}"]} for t in range(8)}


# ── what one role process does ───────────────────────────────────────────────────────────────

def _lmdb(path: str, role: str, n: int, durability: str, budget: float) -> dict:
    store = Store.open(path, durability=durability)
    try:
        cp = Checkpointer(store, role)
        lat, late = [], 0
        for i in range(n):
            state = _state(i)
            t0 = time.perf_counter()
            ok = cp.save(state, budget)
            lat.append((time.perf_counter() - t0) * 1e6)
            late += not ok
            time.sleep(PAUSE_S)
        cp.flush(30)
        st = cp.statistics()
        return {"lat": lat, "late": late, "late_committed": st.late_committed,
                "overruns": st.overruns, "inline": st.inline}
    finally:
        store.close()


def _sqlite(path: str, role: str, n: int, synchronous: str) -> dict:
    db = sqlite3.connect(os.path.join(path, "state.sqlite"), timeout=60, isolation_level=None)
    try:
        db.execute(f"PRAGMA synchronous={synchronous}")
        lat = []
        for i in range(n):
            state = _state(i)
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)",
                       (role, i + 1, time.time_ns(), orjson.dumps(state)))
            db.execute("COMMIT")
            lat.append((time.perf_counter() - t0) * 1e6)
            time.sleep(PAUSE_S)
        return {"lat": lat}
    finally:
        db.close()


def _sqlite_create(path: str) -> None:
    """The database in WAL mode with its table, made once before the roles start: five
    processes racing to switch a new file to WAL get SQLITE_BUSY at once, without the busy
    handler ("database is locked" in one run in three here)."""
    db = sqlite3.connect(os.path.join(path, "state.sqlite"), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE checkpoints (role TEXT, seq INTEGER, time_ns INTEGER,"
                   " states BLOB, PRIMARY KEY (role, seq))")
    finally:
        db.close()


def _json_fsync(path: str, role: str, n: int) -> dict:
    target = os.path.join(path, f"{role}.json")
    lat = []
    for i in range(n):
        state = _state(i)
        t0 = time.perf_counter()
        tmp = target + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, orjson.dumps({"seq": i + 1, "time_ns": time.time_ns(), "states": state}))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        lat.append((time.perf_counter() - t0) * 1e6)
        time.sleep(PAUSE_S)
    return {"lat": lat}


def _run_kind(kind: str, path: str, role: str, n: int) -> dict:
    name, _, arg = kind.partition(":")
    if name == "lmdb":
        durability, _, budget = arg.partition("@")
        return _lmdb(path, role, n, durability, float(budget))
    if name == "sqlite":
        return _sqlite(path, role, n, arg)
    return _json_fsync(path, role, n)


# ── the parent: fork, start together, collect ───────────────────────────────────────────────

class _Runner:
    def __init__(self):
        self.children: list[int] = []
        self.dirs: list[str] = []

    def run(self, kind: str, roles: int, n: int) -> list[dict]:
        path = tempfile.mkdtemp(prefix="syndicate-bench-store-")
        self.dirs.append(path)
        if kind.startswith("lmdb"):
            Store.open(path).close()   # created once, before the roles race to open it
        elif kind.startswith("sqlite"):
            _sqlite_create(path)
        go_r, go_w = os.pipe()
        pipes = []
        for k in range(roles):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:   # a role process
                code = 1
                try:
                    os.close(r)
                    os.read(go_r, 1)
                    out = _run_kind(kind, path, ROLES[k], n)
                    data = orjson.dumps(out)
                    while data:
                        data = data[os.write(w, data):]
                    code = 0
                except BaseException as e:
                    os.write(2, f"bench store child {kind}: {type(e).__name__}: {e}\n".encode())
                finally:
                    os._exit(code)
            os.close(w)
            self.children.append(pid)
            pipes.append((pid, r))
        os.write(go_w, b"g" * roles)     # all start at once
        os.close(go_w)
        os.close(go_r)
        results = []
        for pid, r in pipes:
            chunks = []
            while chunk := os.read(r, 1 << 16):
                chunks.append(chunk)
            os.close(r)
            _, status = os.waitpid(pid, 0)
            self.children.remove(pid)
            if os.waitstatus_to_exitcode(status) != 0 or not chunks:
                raise RuntimeError(f"a {kind} role process failed")
            results.append(orjson.loads(b"".join(chunks)))
        shutil.rmtree(path, ignore_errors=True)
        self.dirs.remove(path)
        return results

    def cleanup(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def _lat(results: list[dict]) -> list[float]:
    return [x for r in results for x in r["lat"]]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="syndicate bench store")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="fewer saves (a smoke run)")
    p.add_argument("-n", type=int, default=0, help="saves per role (default 2000; power 400)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and 2
    n = args.n or (200 if args.quick else 2000)
    n_power = max(20, n // 5)
    runner = _Runner()
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results: list[Comparison] = []
        extra: dict = {}
        base_normal = {r: runner.run("sqlite:NORMAL", r, n) for r in (1, 5)}
        base_full = {r: runner.run("sqlite:FULL", r, n_power) for r in (1, 5)}
        base_json = {r: runner.run("json", r, n_power) for r in (1, 5)}
        for durability, count in (("process", n), ("periodic", n), ("power", n_power)):
            for roles in (1, 5):
                ours = runner.run(f"lmdb:{durability}@1.0", roles, count)
                label = "1 role" if roles == 1 else f"{roles} roles at once"
                if durability == "power":
                    for base, blabel in ((base_full, "sqlite WAL synchronous=FULL"),
                                         (base_json, "JSON file + fsync + rename")):
                        results.append(Comparison(
                            f"checkpoint commit, {label}, durability=power vs {blabel.split()[0]}",
                            "us", Summary.of(f"lmdb power ({label})", _lat(ours)),
                            Summary.of(f"{blabel} ({label})", _lat(base[roles])),
                            notes="power-loss durable"))
                else:
                    results.append(Comparison(
                        f"checkpoint commit, {label}, durability={durability}", "us",
                        Summary.of(f"lmdb {durability} ({label})", _lat(ours)),
                        Summary.of(f"sqlite WAL synchronous=NORMAL ({label})", _lat(base_normal[roles])),
                        notes="process-crash safe"))
        for roles in (1, 5):   # the switch path: what the switch is held for, with a budget
            ours = runner.run("lmdb:process@0.0003", roles, n)
            saves = len(_lat(ours))
            late = sum(r["late"] for r in ours)
            results.append(Comparison(
                f"switch-path save(budget=300us), {roles} role(s), durability=process", "us",
                Summary.of("time save() held the switch", _lat(ours)),
                Summary.of(f"sqlite WAL NORMAL commit ({roles} role(s))", _lat(base_normal[roles])),
                notes=f"late {late}/{saves}, committed after {sum(r['late_committed'] for r in ours)}, "
                      f"overruns {sum(r['overruns'] for r in ours)}, inline {sum(r['inline'] for r in ours)}"))
            extra[f"late_saves_{roles}_roles"] = f"{late}/{saves}"
        target = next(c for c in results if c.name.startswith("checkpoint commit, 1 role, durability=process"))
        extra["targets"] = (f"default p99 {target.ours.p99:.0f} us (target < 2000; goal 50); "
                            f"power p99 1 role "
                            f"{next(c for c in results if 'durability=power' in c.name).ours.p99:.0f} us (goal 500)")
        emit("store", results, args.json, extra)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        runner.cleanup()
        signal.signal(signal.SIGTERM, old_term)
