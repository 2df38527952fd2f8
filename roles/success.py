"""The guide's success metrics, from what the roles left in LMDB (the coordinator's
team-performance task computes them; its status info and `status --json` show them).

    task completion rate   completed / runs of every task, from each role's last checkpoint
                           (goal > 95 %)
    average task duration  the mean wall time of a completed run, weighted by runs (< 100 ms)
    discovery rate         discoveries per hour over the last hour, every role (> 10 / h)
    execution decision     an agent's search + decide time per priced decision, p50 / p99
                           (< 50 ms), from the `opportunities` records the coordinator read

    opportunity response   a swap log's arrival on the socket (the record's t_origin) to the
                           agent's decision (t_decided), p50 / p99 (< 100 ms)

Knowledge retention, state-save and switch success are the control block's counters: `status`
computes them (engine/core/status.guide) beside these, and checks all against one table.
"""
from __future__ import annotations

import time

import orjson

from engine.core.store.keys import prefix_bytes

from engine.core.status import met


def task_figures(store) -> dict:
    runs = completed = 0
    weighted_ms = 0.0
    with store.read() as r:
        roles = r.prefixes("tasks")
    for role in roles:
        rec = store.load_checkpoint(role) or {}
        for st in (rec.get("states") or {}).values():
            if not isinstance(st, dict):
                continue
            n, done = int(st.get("runs") or 0), int(st.get("completed") or 0)
            runs, completed = runs + n, completed + done
            if st.get("mean_run_ms") is not None:
                weighted_ms += float(st["mean_run_ms"]) * done
    return {"task_runs": runs,
            "task_completion_rate": round(completed / runs, 4) if runs else None,
            "avg_task_ms": round(weighted_ms / completed, 3) if completed else None}


def discovery_rate(store, window_s: float = 3600.0, cap: int = 2_000) -> float:
    """Discoveries per hour over the last `window_s`, newest first, at most `cap` read."""
    since, n, seen = time.time() - window_s, 0, 0
    with store.read() as r:
        for role in r.prefixes("discoveries"):
            for _, raw in r.items("discoveries", prefix_bytes(role), reverse=True):
                seen += 1
                try:
                    t = float(orjson.loads(raw).get("t") or 0)
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    continue
                if t < since or seen > cap:
                    break
                n += 1
    return round(n * 3600.0 / window_s, 2)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def guide_metrics(store, decision_ms: list[float], response_ms: list[float] = ()) -> dict:
    out = {**task_figures(store), "discoveries_per_hour": discovery_rate(store),
           "decision_ms_p50": percentile(decision_ms, 0.5),
           "decision_ms_p99": percentile(decision_ms, 0.99), "decisions_timed": len(decision_ms),
           "response_ms_p50": percentile(list(response_ms), 0.5),
           "response_ms_p99": percentile(list(response_ms), 0.99),
           "responses_timed": len(response_ms)}
    out["met"] = {k: v for k, v in met(out).items() if k in out}
    return out
