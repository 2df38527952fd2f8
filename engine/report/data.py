"""What `syndicate report` reads from an LMDB snapshot, in one read transaction.

    opportunities   every agent decision: latency (t_event − t_origin: the monitor's detection;
                    search_us, decide_us), approved or the refusal code, per role and chain
    outcomes        the executor's ledger: the newest record of each Action (paper: simulated;
                    landed: realised beside predicted; reverted: gas only), with its wall time
    tasks           role checkpoints: each task's runs, completed, errors, busy_ms: the task
                    efficiency (completion rate) and the background share of wall time
    discoveries     per role and kind, with their wall time
    models          whatever the learned model wrote (helper `learn`'s outcome model): counts
                    and the numeric fields of each record; empty means "no model yet"

Only the store's read API is used (engine/core/store: ReadOnlyStore); a missing or corrupt
store raises ReportError naming it.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


class ReportError(Exception):
    """The snapshot cannot be read; the message names it and why."""


@dataclass
class Snapshot:
    path: str
    schema: dict = field(default_factory=dict)
    detect_us: dict[str, list[float]] = field(default_factory=dict)     # role -> samples
    search_us: dict[str, list[float]] = field(default_factory=dict)
    decide_us: dict[str, list[float]] = field(default_factory=dict)
    decisions: dict[str, Counter] = field(default_factory=dict)          # role -> code counts
    profit: dict[tuple[str, str], list[tuple[float, int]]] = field(default_factory=dict)
    outcome_states: Counter = field(default_factory=Counter)
    predicted_realised: list[tuple[int, int, str]] = field(default_factory=list)
    gas_wei: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, dict[str, dict]] = field(default_factory=dict)      # role -> task -> newest
    busy_share: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    discoveries: dict[str, Counter] = field(default_factory=dict)        # role -> kind counts
    discovery_times: dict[str, list[float]] = field(default_factory=dict)
    models: dict[str, list[dict]] = field(default_factory=dict)          # prefix -> records

    def empty(self) -> bool:
        return not (self.decisions or self.outcome_states or self.tasks or self.discoveries)


def _num(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def load(path: str | Path) -> Snapshot:
    from engine.core.store import ReadOnlyStore, StoreError
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{p}: no such snapshot (an LMDB store directory: var/lmdb/<name>, or "
                          "a `syndicate snapshot PATH copy DEST` backup)")
    try:
        store = ReadOnlyStore.open(p)
    except StoreError as e:
        raise ReportError(f"{p}: not a readable snapshot: {e}") from None
    except Exception as e:            # lmdb.Error and friends: a damaged file
        raise ReportError(f"{p}: not a readable snapshot: {type(e).__name__}: {e}") from None
    snap = Snapshot(str(p))
    try:
        with store.read() as r:
            snap.schema = r.schema()
            _opportunities(r, snap)
            _outcomes(r, snap)
            _tasks(r, snap)
            _discoveries(r, snap)
            for prefix in r.prefixes("models"):
                snap.models[prefix] = [rec for _, rec in r.records("models", prefix)
                                       if isinstance(rec, dict)]
    except ReportError:
        raise
    except Exception as e:            # a value that does not decode: the file is damaged
        raise ReportError(f"{p}: the snapshot is damaged: {type(e).__name__}: {e} (try "
                          f"`syndicate snapshot {p} verify`)") from None
    finally:
        store.close()
    return snap


def _opportunities(r, snap: Snapshot) -> None:
    for role in r.prefixes("opportunities"):
        codes = snap.decisions.setdefault(role, Counter())
        for _, rec in r.records("opportunities", role):
            if not isinstance(rec, dict):
                continue
            codes["approved" if rec.get("approved") else str(rec.get("code"))] += 1
            te, to = rec.get("t_event"), rec.get("t_origin")
            if isinstance(te, int) and isinstance(to, int) and te >= to:
                snap.detect_us.setdefault(role, []).append((te - to) / 1e3)
            for key, dest in (("search_us", snap.search_us), ("decide_us", snap.decide_us)):
                v = rec.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    dest.setdefault(role, []).append(float(v))


def _outcomes(r, snap: Snapshot) -> None:
    newest: dict[str, dict] = {}
    for role in r.prefixes("outcomes"):
        for _, rec in r.records("outcomes", role):
            if isinstance(rec, dict):   # the newest record is the state; earlier ones carry
                key = str(rec.get("key"))   # the token and prediction (merged, newest wins)
                newest[key] = {**newest.get(key, {}), **rec}
    gas: Counter = Counter()
    for rec in sorted(newest.values(), key=lambda x: x.get("t") or 0):
        state, chain = rec.get("state"), str(rec.get("chain"))
        snap.outcome_states[state] += 1
        gas[chain] += _num(rec.get("gas_cost_wei")) or 0
        amount = {"landed": rec.get("realised"), "paper": rec.get("simulated")}.get(state)
        if amount is None or _num(amount) is None or not isinstance(rec.get("t"), (int, float)):
            continue
        token = str(rec.get("token") or "?")
        snap.profit.setdefault((chain, f"{state} {token[:10]}"), []).append((float(rec["t"]), _num(amount)))
        if state == "landed" and _num(rec.get("predicted")) is not None:
            snap.predicted_realised.append((_num(rec["predicted"]), _num(amount), chain))
    snap.gas_wei = dict(gas)


def _tasks(r, snap: Snapshot) -> None:
    for role in r.prefixes("tasks"):
        prev = None
        for _, rec in r.records("tasks", role):
            states = rec.get("states") if isinstance(rec, dict) else None
            if not isinstance(states, dict):
                continue
            snap.tasks[role] = {n: s for n, s in states.items() if isinstance(s, dict)}
            t = (rec.get("time_ns") or 0) / 1e9
            busy = sum(float(s.get("busy_ms") or 0) for s in snap.tasks[role].values())
            if prev is not None and t > prev[0]:
                share = max(0.0, (busy - prev[1]) / 1e3 / (t - prev[0]))
                snap.busy_share.setdefault(role, []).append((t, share))
            prev = (t, busy)


def _discoveries(r, snap: Snapshot) -> None:
    for role in r.prefixes("discoveries"):
        kinds = snap.discoveries.setdefault(role, Counter())
        for _, rec in r.records("discoveries", role):
            if isinstance(rec, dict):
                kinds[str(rec.get("kind") or rec.get("task") or "?")] += 1
                if isinstance(rec.get("t"), (int, float)):
                    snap.discovery_times.setdefault(role, []).append(float(rec["t"]))


def model_series(records: list[dict]) -> dict[str, list[float]]:
    """The numeric top-level fields of a model's records, in order (its track record)."""
    out: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seq",):
                out[k].append(float(v))
    return {k: v for k, v in out.items() if len(v) >= 1}
