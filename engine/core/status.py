"""`syndicate status` as data: read the control block and the run directory, touch nobody.

The JSON shape (`syndicate status --json`, and the supervisor's USR2 report) is stable:

    {"engine": NAME, "supervisor_pid": int, "running": bool, "uptime_s": float,
     "watchdog": {"mean_cost_us", "max_cost_us"},   (CPU time of one pass over every role)
     "roles": [{"name", "pid", "alive", "state", "task", "uptime_s", "restarts",
                "private_bytes", "cpu_percent", "switches", "events", "events_lost",
                "coalesced", "decisions", "checkpoints", "late_saves", "discoveries",
                "interrupts", "slices", "overruns", "task_errors", "checkpoint_errors",
                "decisions_dropped", "switches_broken", "restore_saved", "restore_done",
                "watchdog_actions", "last_exit", "paused", "shedding", "boost",
                "heartbeat_age_s", "efficiency", "info" (what the role itself reports, see
                RoleRuntime.set_info: {"summary": str, ...} or null),
                "latency_us": {"signal"|"pause"|"save"|"switch"|"decide"|"event"|"resume"|
                               "slice"|"detect": {"n", "p50", "p99"}}}],
     "guide": {GUIDE key: figure or null, ..., "met": {key: bool or null}}}

"guide" is the implementation guide's success metrics: those the control block counts over
every role (switch success, state saves, knowledge retention), and those the coordinator's
team-performance task computes from LMDB (task completion, task duration, discovery rate,
opportunity response, execution decision), taken from its `info.guide` when it has run.

Fields may be added; none will be renamed or removed without a version bump of this text.
Latency figures come from log-scale histograms (4 buckets per octave): ±10 %.
"""
from __future__ import annotations

import time

from .control import ControlBlock, F, Flag, H, State
from .info import read_info as _read_info


def _alive(pid: int) -> bool:
    """Running (a zombie is not: an orphaned role waits to be reaped by init)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rindex(b")") + 2:data.rindex(b")") + 3] not in (b"Z", b"X")


def read_info(run_dir, name: str) -> dict | None:
    """A role's own status document (RoleRuntime.set_info), or None."""
    if run_dir is None:
        return None
    return _read_info(f"{run_dir}/roles/{name}.info.json")


def role_rows(cb: ControlBlock, run_dir=None) -> list[dict]:
    rows = []
    now_wall, now_mono = time.time_ns(), time.monotonic_ns()
    for i in range(cb.slots):
        v = cb.slot(i).snapshot()
        if not v.name:
            continue
        pid = v[F.PID]
        busy, due = v[F.BUSY_NS], v[F.DUE_NS]
        lat = {}
        for h in H:
            key = h.name.lower()
            n = sum(v.hists[key])
            p50, p99 = v.percentile_us(key, 50), v.percentile_us(key, 99)
            lat[key] = {"n": n, "p50": None if p50 is None else round(p50, 1),
                        "p99": None if p99 is None else round(p99, 1)}
        hb = v[F.HEARTBEAT_NS]
        rows.append({
            "name": v.name, "slot": i, "pid": pid, "alive": _alive(pid),
            "state": v.state.name.lower(), "task": v.task,
            "uptime_s": round((now_wall - v[F.STARTED_NS]) / 1e9, 1) if v[F.STARTED_NS] else None,
            "restarts": v[F.RESTARTS], "private_bytes": v[F.MEM_PRIVATE],
            "cpu_percent": round(v[F.CPU_PERMILLE] / 10.0, 1),
            "switches": v[F.SWITCHES], "events": v[F.EVENTS], "events_lost": v[F.EVENTS_LOST],
            "coalesced": v[F.COALESCED], "decisions": v[F.DECISIONS],
            "checkpoints": v[F.CHECKPOINTS], "late_saves": v[F.LATE_SAVES],
            "discoveries": v[F.DISCOVERIES], "interrupts": v[F.INTERRUPTS],
            "slices": v[F.SLICES], "overruns": v[F.OVERRUNS], "task_errors": v[F.TASK_ERRORS],
            "checkpoint_errors": v[F.CHECKPOINT_ERRORS],
            "decisions_dropped": v[F.DECISIONS_DROPPED],
            "switches_broken": v[F.SWITCHES_BROKEN], "restore_saved": v[F.RESTORE_SAVED],
            "restore_done": v[F.RESTORE_DONE],
            "watchdog_actions": v[F.WATCHDOG_ACTIONS], "last_exit": v[F.LAST_EXIT],
            "paused": bool(v[F.FLAGS] & Flag.PAUSED),
            "shedding": bool(v[F.FLAGS] & Flag.SHEDDING), "boost": bool(v[F.BOOST]),
            "heartbeat_age_s": round((now_mono - hb) / 1e9, 3) if hb and hb <= now_mono else None,
            "efficiency": round(busy / due, 4) if due else None,
            "latency_us": lat,
            "info": read_info(run_dir, v.name),
        })
    return rows


def report(cb: ControlBlock, engine: str, run_dir=None) -> dict:
    sup = cb.supervisor_pid
    mean_ns, max_ns = cb.watchdog_cost_ns
    return {"engine": engine, "supervisor_pid": sup, "running": _alive(sup),
            "uptime_s": round((time.time_ns() - cb.created_ns) / 1e9, 1),
            "watchdog": {"mean_cost_us": round(mean_ns / 1000, 1),
                         "max_cost_us": round(max_ns / 1000, 1)},
            "roles": (rows := role_rows(cb, run_dir)), "guide": guide(rows)}


# The guide's success metrics: key -> (comparison, goal, what it is)
GUIDE = {
    "task_completion_rate": (">", 0.95, "background task runs completed"),
    "avg_task_ms": ("<", 100.0, "mean duration of a completed task run, ms"),
    "discoveries_per_hour": (">", 10.0, "discoveries per hour, every role"),
    "knowledge_retention": (">", 0.99, "task states restored at a restart, of those saved"),
    "state_save_success": (">", 0.999, "checkpoints committed, of those attempted"),
    "switch_success": (">", 0.999, "switches that saved in budget and finished, of those begun"),
    "response_ms_p99": ("<", 100.0, "log arrival -> the agent's decision, p99 ms"),
    "decision_ms_p99": ("<", 50.0, "an agent's search + decide per decision, p99 ms"),
}


def met(figures: dict) -> dict:
    """{key: figure beats its goal} (None where there is no figure yet)."""
    return {k: (None if figures.get(k) is None else
                figures[k] > goal if op == ">" else figures[k] < goal)
            for k, (op, goal, _) in GUIDE.items()}


def guide(rows: list[dict]) -> dict:
    """The guide's metrics from the control block's counters (summed over roles; each role's
    counters survive its restarts), beside the coordinator's (its status info) if any."""
    tot = {k: sum(int(r.get(k) or 0) for r in rows) for k in (
        "switches", "late_saves", "switches_broken", "checkpoints", "checkpoint_errors",
        "restore_saved", "restore_done")}
    begun = tot["switches"] + tot["switches_broken"]
    tried = tot["checkpoints"] + tot["checkpoint_errors"]
    out = {"switch_success": round((tot["switches"] - tot["late_saves"]) / begun, 5)
           if begun else None,
           "state_save_success": round(tot["checkpoints"] / tried, 5) if tried else None,
           "knowledge_retention": round(tot["restore_done"] / tot["restore_saved"], 5)
           if tot["restore_saved"] else None, **tot}
    for r in rows:      # the coordinator's, from LMDB (roles/success.py)
        g = (r.get("info") or {}).get("guide")
        if isinstance(g, dict):
            out.update({k: g.get(k) for k in GUIDE if k in g and k not in out})
            out["from"] = r["name"]
    out["met"] = met(out)
    return out


STATE_NAMES = [s.name.lower() for s in State]
