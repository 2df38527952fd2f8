"""Checkpoints on the switch path: save a role's task states within a time budget, or go on late.

    switch (role's main thread)              WritableStore (engine/core/store/writer.py)
    save(states, budget_s)
      encode {task: state} now ──────────►  inline commit, if the writer lock is free and the
                                            recent commit time fits what is left of the budget
                                            ──► True
                                  else ──►  writer thread; wait for it up to the budget
                                            ──► True if committed by then, else False: the save
                                            goes on and commits as soon as the lock frees
                                            ("force switch, accept partial state loss")

A late save is counted; so is an inline commit that ran past the budget (an "overrun": the
only way this module can hold a switch too long, e.g. descheduled in the middle of a commit).
A save made while an earlier late one still waits in the queue replaces it (the newer state
supersedes) instead of queueing behind it.  Every buffered discovery of the process is committed
in the same transaction as the checkpoint, so a checkpoint never claims progress whose
discoveries are missing.  `restore()`: at a role's start, the newer of its LMDB checkpoint and
the state its last switch staged.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import orjson

from engine.core.store import StoreError, WritableStore, WriteJob


@dataclass
class CheckpointStatistics:
    role: str
    saves: int              # calls to save()
    in_budget: int          # committed before save() returned, within the budget
    late: int               # save() returned False: the commit went on after the switch
    late_committed: int     # of those, committed since (the rest are pending or failed)
    overruns: int           # committed inline, but save() took longer than its budget
    inline: int             # committed in the caller's thread
    superseded: int         # a late save replaced by a newer one before it started
    failures: int
    last_error: str | None
    last_seq: int | None    # seq of the newest checkpoint known committed
    hold_p50_us: float      # how long save() held the caller
    hold_p99_us: float
    commit_p50_us: float    # save() called → committed (late saves included)
    commit_p99_us: float


def _pct(values, q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))] * 1e6


class Checkpointer:
    """One per role process: `save(states, budget_s)` on every switch, every minute, on
    `ctl checkpoint`/USR1 and at a graceful stop (with a long budget); `load()` at start."""

    def __init__(self, store: WritableStore, role: str, *, window: int = 4096):
        if not isinstance(store, WritableStore):
            raise StoreError(f"{store.path}: a Checkpointer needs a writable store")
        self.store, self.role = store, role
        self._late: WriteJob | None = None
        self._late_started = 0.0
        self._hold = deque(maxlen=window)
        self._commit = deque(maxlen=window)
        self._n = dict(saves=0, in_budget=0, late=0, late_committed=0, overruns=0, inline=0,
                       superseded=0, failures=0)
        self.last_error: str | None = None
        self.last_seq: int | None = None

    def load(self) -> dict | None:
        """The last committed checkpoint: {"seq", "time_ns", "states": {task: state}} or None."""
        return self.store.load_checkpoint(self.role)

    def save(self, states: dict, budget_s: float, *, queue: bool = True) -> bool | None:
        """Save {task: state}.  True: committed before returning.  False: not yet; it commits
        right after (see statistics()).  Never waits longer than budget_s for the disk or for
        another process's writer lock.  queue=False (a state already safe in the staging page):
        inline now or not at all — None, nothing written, the caller tries again later (the
        writer thread, at the role's nice 10, would hold the GIL mid-job while the boosted
        main thread waits for it)."""
        start = time.perf_counter()
        deadline = start + budget_s
        self._n["saves"] += 1
        self._reap_late()
        op = self.store.checkpoint_op(self.role, states)   # encodes now: states may change next

        job = None
        late = self._late
        # Still queued: the newer state joins its txn (not replace: each op carries its
        # discoveries).
        if late is not None and self.store.join_queued(late, [op]):
            job = late
            self._n["superseded"] += 1
        if job is None and not queue:
            job = self.store.write([op], inline=True, queue=False)
            if job is None:
                self._n["saves"] -= 1
                return None
            self._n["inline"] += 1
        if job is None:
            inline = self.store.commit_estimate_s() <= deadline - time.perf_counter()
            job = self.store.write([op], inline=inline)
            if job.inline:
                self._n["inline"] += 1
        committed = job.wait(deadline - time.perf_counter())
        now = time.perf_counter()
        self._hold.append(now - start)
        if committed:
            if job is self._late:
                self._late = None
            return self._settle(job, start, now, deadline)
        self._n["late"] += 1
        if job is not self._late:
            self._late, self._late_started = job, start
        return False

    def _settle(self, job: WriteJob, start: float, now: float, deadline: float) -> bool:
        if job.error is not None:
            self._n["failures"] += 1
            self.last_error = f"{type(job.error).__name__}: {job.error}"
            return False
        self.last_seq = job.results[-1]
        self._commit.append(job.committed - start)
        self._n["in_budget"] += 1
        if now > deadline:
            self._n["overruns"] += 1
        return True

    def _reap_late(self) -> None:
        late = self._late
        if late is None or not late.done():
            return
        self._late = None
        if late.error is not None:
            self._n["failures"] += 1
            self.last_error = f"{type(late.error).__name__}: {late.error}"
        else:
            self._n["late_committed"] += 1
            self.last_seq = late.results[-1]
            self._commit.append(late.committed - self._late_started)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until a late save (if any) has committed."""
        late = self._late
        ok = late.wait(timeout) if late is not None else True
        self._reap_late()
        return ok

    def statistics(self) -> CheckpointStatistics:
        self._reap_late()
        hold, commit = list(self._hold), list(self._commit)
        return CheckpointStatistics(
            self.role, last_error=self.last_error, last_seq=self.last_seq,
            hold_p50_us=_pct(hold, 50), hold_p99_us=_pct(hold, 99),
            commit_p50_us=_pct(commit, 50), commit_p99_us=_pct(commit, 99), **self._n)


def _kept(states, tm) -> int:
    """How many of a checkpoint's task states belong to tasks the role runs now."""
    return sum(1 for n in states if n in tm.entries) if isinstance(states, dict) else 0


def restore(store, staged, tm, name: str, log) -> tuple[int, int]:
    """A role resumes from its newest saved state: the last LMDB checkpoint, or `staged` (the
    staging page's (time_ns, payload)), the state of a switch whose LMDB commit the previous
    incarnation did not live to make — unless that state had discoveries not yet committed
    (they died with it): resuming from it would skip work whose findings are lost, so the
    LMDB checkpoint wins then.

    Returns (task states saved, restored): the guide's knowledge retention.  Only states of
    tasks the role still runs count as saved (engine.toml may have turned one off: that loses
    no knowledge); one that is not an object counts as saved and not restored."""
    rec = store.load_checkpoint(name) if store is not None else None
    saved = done = 0
    if rec:
        states = rec.get("states", {})
        saved = _kept(states, tm)
        done = len(tm.restore(states))    # state and history
    if staged and (rec is None or staged[0] > int(rec.get("time_ns", 0))):
        try:
            doc = orjson.loads(staged[1])
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("pending") == 0 and \
                isinstance(doc.get("states"), dict):
            restored = tm.restore(doc["states"])   # the newer state on top
            if store is not None:
                store.save_checkpoint(name, tm.states())
            log.info("resumed from the state staged by the last switch (newer than the last "
                     "LMDB checkpoint; now committed)", tasks=",".join(restored) or "-")
            return max(saved, _kept(doc["states"], tm)), max(done, len(restored))
    if rec:
        log.info("resumed from checkpoint", seq=rec.get("seq"),
                 tasks=",".join(rec.get("states", {})) or "-")
    elif store is not None:
        # Nothing durable yet (a new role, or every earlier incarnation died within the second
        # a switch's commit may wait): commit the starting state now, once, so a restart
        # always resumes from a checkpoint of this role.
        store.save_checkpoint(name, tm.states())
        log.info("first checkpoint of this role", tasks=",".join(tm.states()) or "-")
    return saved, done
