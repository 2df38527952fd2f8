"""A role process: background tasks in short slices, and the atomic switch when interrupted.

    fork (supervisor) ─► role_main: name the process, arm PDEATHSIG, install handlers,
                          open the store, build the role kind and its tasks, restore the last
                          checkpoint, then loop:

    ┌─► heartbeat ─► operator signals? (pause, resume, checkpoint, shed, restart, stop)
    │   interrupt flag? ──yes──► SWITCH:  drain the input rings (all of them, one pass)
    │                                     nothing new → coalesced (no switch)
    │                                     save task states (shared-memory staging page)
    │                                     kind.handle(events) → decisions → outbox ring
    │                                     interrupt the roles that take decisions
    │                                     wait for the kind's thread if it asks (hold), lower
    │                                     the boost, resume the preempted task where it stopped
    │   checkpoint due? ─► save (LMDB)   also SWITCH_COMMIT_S after a switch: what it staged
    │   one background slice (≤ slice budget, stops at the first safe point after an interrupt)
    └── nothing to do: sleep in select() on the signal wake-up fd and the tasks' fds

Every step is timed on CLOCK_MONOTONIC into the control block's histograms: sent → seen
(SIGNAL), seen → paused (PAUSE), paused → saved (SAVE), sent → handling (SWITCH), handling →
decision (DECIDE), event written → decision (EVENT), decision → resumed (RESUME).

`RoleKind` (kind.py) is the base of every role in roles/: it names its tasks and handles
events.  The engine core never imports roles/: engine.toml's dotted path names the kind.
"""
from __future__ import annotations

import gc
import os
import select
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from .checkpoint import restore
from .control import F, H, State
from .info import InfoFile
from .role_ops import OperatorHandlers, Stop as _Stop
from .signals import (FORK_BLOCKED, ROLE_SIGNALS, Background, drain, set_parent_death_signal,
                      set_realtime)
from .switch import EventPublisher, Interrupter
from .tasks import Task, TaskContext, TaskManager

if TYPE_CHECKING:  # pragma: no cover
    from .wiring import Wiring


DISCOVERY_COMMIT_S = 1.0   # discoveries wait at most this long for the checkpoint that commits them
# A switch's state, staged in shared memory, reaches LMDB within this long: one commit for every
# switch in that time, made between background slices (see switch() for why not at once).
SWITCH_COMMIT_S = 1.0
COMMIT_RETRY_S, COMMIT_TRIES = 0.05, 20   # that commit: inline only, retried; then queued

from .kind import (RoleKind, configure_tasks, describe_kind, hold_for_kind,  # noqa: F401
                   resolve_kind)


class RoleRuntime(OperatorHandlers):
    """Everything a role process owns after fork."""

    def __init__(self, cfg, role_cfg, wiring: "Wiring", log):
        self.cfg, self.config, self.wiring = cfg, role_cfg, wiring
        self.name = role_cfg.name
        self.log = log
        self.index = wiring.slots[self.name]
        self.slot = wiring.control.slot(self.index)
        self.supervisor_pid = os.getppid()
        self.interrupt = [False]
        self.t_seen = 0
        self.ops: deque[int] = deque()
        self.store = None
        self.saver = None
        self.kind: RoleKind | None = None
        self.tm: TaskManager | None = None
        self.readers: list[tuple[str, Any]] = []
        self.outbox: EventPublisher | None = None
        self.publishers: dict[str, EventPublisher] = {}
        sw = cfg.switch
        self.bg = Background(sw["background_policy"], sw["background_nice"])
        self.checkpoint_budget_s = sw["checkpoint_budget_us"] / 1e6
        self.checkpoint_interval = cfg.store["checkpoint_interval"]
        self.next_checkpoint = time.monotonic() + self.checkpoint_interval
        self._wake_r = self._wake_w = -1
        self.commit_due = float("inf")   # when the staged state of the last switches commits
        self.commit_misses = 0           # tries of that commit that found the writer lock busy
        self.poll_interval = 1.0 if role_cfg.inbox == "poll" else 0.0
        self.next_poll = 0.0
        self.keep_priority = False   # a realtime source stays at its FIFO priority after a switch
        self.reboosts = 0            # switches that ended with another interrupt's boost undone
        self._info = InfoFile(cfg.run_dir / "roles" / f"{self.name}.info.json")

    # ------------------------------------------------------------------ signals (record only)
    def on_interrupt(self, signum, frame) -> None:
        self.t_seen = time.monotonic_ns()
        self.interrupt[0] = True

    def _on_op(self, signum, frame) -> None:
        self.ops.append(signum)

    def install_signals(self) -> None:
        ROLE_SIGNALS.install(self, self._on_op)   # faulthandler: SIGABRT prints the Python stack
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORK_BLOCKED)

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        slot = self.slot
        slot.set(F.PID, os.getpid())
        slot.set(F.STARTED_NS, time.time_ns())
        slot.set(F.HEARTBEAT_NS, time.monotonic_ns())
        slot.set(F.FLAGS, 0)
        slot.set_state(State.STARTING)
        slot.set_task("")
        self._open_store()
        kind_cls = resolve_kind(self.config.kind)
        self.kind = kind_cls(self)
        tasks = configure_tasks(self.kind.tasks(), self.config.tasks, self.log,
                                set(self.config.optional_tasks))
        ctx = TaskContext(self.name, discover=self._discover, log=self.log.info,
                          options=self.config.options)
        self.tm = TaskManager(tasks, ctx, max_concurrent=self.config.max_concurrent,
                              slice_budget_us=self.config.slice_budget_us,
                              on_error=self._task_error, log=self.log)
        staged = self.wiring.staging.newest(self.index) if self.wiring.staging else None
        saved, done = restore(self.store, staged, self.tm, self.name, self.log)   # the newest
        self.slot.add(F.RESTORE_SAVED, saved)
        self.slot.add(F.RESTORE_DONE, done)
        w = self.wiring
        for ring_name in w.inputs.get(self.name, []):
            self.readers.append((ring_name, w.rings[ring_name].reader(self.index, start="resume")))
        boost_prio = w.role_boost_priority
        out = w.outputs.get(self.name)
        if out:
            targets = [w.slots[r] for r in w.subscribers.get(out, [])]
            self.outbox = EventPublisher(w.rings[out], Interrupter(
                w.control, targets, boost_priority=boost_prio) if targets else None)
        for ring_name in w.emits.get(self.name, []):
            targets = [w.slots[r] for r in w.subscribers.get(ring_name, [])]
            self.publishers[ring_name] = EventPublisher(w.rings[ring_name], Interrupter(
                w.control, targets, boost_priority=boost_prio))
        self.kind.on_start()
        if self.kind.realtime and w.monitor_priority is not None:
            self.keep_priority = True
            if not set_realtime(w.monitor_priority):
                self.log.warning("cannot run at SCHED_FIFO: interrupts will wait for the scheduler")
        else:
            self.bg.enter()
        slot.set(F.BOOST, 1 if w.role_boost_priority is not None else 0)
        slot.set_state(State.BACKGROUND)
        # Everything built so far lives as long as the role: keep it out of the collector's
        # generations, so a collection that does happen only walks what the role allocated since.
        gc.freeze()
        self.log.info("role started", kind=self.config.kind, tasks=len(tasks),
                      inputs=",".join(n for n, _ in self.readers) or "-")

    def _open_store(self) -> None:
        from .store import Store  # after fork, never before: LMDB forbids crossing a fork
        self.store = Store.open(self.cfg.store_path, durability=self.cfg.store["durability"],
                                map_size=self.wiring.map_size, discoveries_with_checkpoints=True)
        from .checkpoint import Checkpointer
        self.saver = Checkpointer(self.store, self.name)

    def _discover(self, task: str, record: dict) -> None:
        self.slot.add(F.DISCOVERIES)
        if self.store is not None:
            if not self.store.pending_discoveries():
                # committed with the next checkpoint, which comes within DISCOVERY_COMMIT_S
                self.next_checkpoint = min(self.next_checkpoint,
                                           time.monotonic() + DISCOVERY_COMMIT_S)
            self.store.append_discovery(self.name, {"task": task, "t": time.time(), **record})

    def _task_error(self, task: Task, exc: BaseException) -> None:
        self.slot.add(F.TASK_ERRORS)   # every failure; the task manager logs them, rate-limited

    # ------------------------------------------------------------------ checkpoints
    def _stage(self, states: dict) -> bool:
        st = self.wiring.staging
        if st is None:
            return False
        pending = self.store.pending_discoveries() if self.store is not None else 0
        try:
            return st.save(self.index, time.time_ns(),
                           orjson.dumps({"pending": pending, "states": states}))
        except (TypeError, orjson.JSONEncodeError) as e:
            self.slot.add(F.CHECKPOINT_ERRORS)
            self.log.error("task state is not serialisable", error=repr(e))
            return False

    def checkpoint(self, why: str, budget_s: float | None = None, *,
                   staged: bool = False) -> bool | None:
        """Commit every task's state (and the discoveries that came with it) to LMDB.

        Without a budget (interval, request, stop) it also refreshes the staging page, so that
        page is never older than LMDB, and waits for the commit.  With one (the switch) it
        never waits longer: a commit that cannot finish in time goes on in the store's writer.
        That is a *late* save unless `staged`: the switch's state is in the staging page, and
        this commit makes it durable.  Staged and interval commits are inline or tried again in
        COMMIT_RETRY_S (None: the writer lock was busy), queued after COMMIT_TRIES: a wait for
        the writer thread held the role 2-20 ms (DEVELOPING.md, "the atomic switch")."""
        if self.store is None:
            return True
        states = self.tm.states()
        try:
            if budget_s is None:
                self._stage(self.tm.slim_states())
            if (staged or why == "interval") and self.commit_misses < COMMIT_TRIES:
                ok = self.saver.save(states, budget_s or 1.0, queue=False)
                if ok is None:             # the writer lock was busy: again in COMMIT_RETRY_S
                    self.commit_misses += 1
                    again = time.monotonic() + COMMIT_RETRY_S
                    if staged:
                        self.commit_due = min(self.commit_due, again)
                    else:
                        self.next_checkpoint = again
                    return None
            elif budget_s is None:
                self.store.save_checkpoint(self.name, states)   # waits for the commit
                ok = True
            else:
                ok = self.saver.save(states, budget_s)
        except Exception as e:  # a failed save must not stop the switch or the role
            self.slot.add(F.CHECKPOINT_ERRORS)
            self.log.error("checkpoint failed", why=why, error=repr(e))
            return False
        self.slot.add(F.CHECKPOINTS)
        if not ok and not staged:
            self.slot.add(F.LATE_SAVES)
        self.next_checkpoint = time.monotonic() + self.checkpoint_interval
        self.commit_due = float("inf")   # whatever the switches staged is in this commit
        self.commit_misses = 0
        return ok

    # ------------------------------------------------------------------ publishing (monitors)
    def publish(self, ring: str, events: list[dict], *, notify: bool = True) -> int:
        return self.publishers[ring].publish_many(events, notify=notify)

    def set_info(self, doc: dict) -> None:
        """What this role wants `status` to show beyond the control block's counters (a kind's
        own health: a dict with a one-line "summary" and any fields): written atomically to
        run_dir/roles/<role>.info.json, read by `status`.  Call it at most a few times a second.
        Written in place (InfoFile): it runs between two safe points of a background task."""
        try:
            self._info.write(orjson.dumps(doc, default=str))
        except OSError as e:      # a full or missing run dir must not stop the role
            self.log.warning("cannot write the role's status info", error=str(e))

    def publish_encoded(self, ring: str, records: list, *, notify: bool = True) -> int:
        """Records a hot-path codec encoded (engine/core/frame.py); `notify=False`: every
        reader gets them, nobody is interrupted."""
        return self.publishers[ring].publish_encoded(records, notify=notify)

    def _publish_decisions(self, decisions: list[dict]) -> int:
        """Write the decisions to the outbox; how many went out.  One too large for the slots
        is its kind's bug, not a reason to crash (a restart would meet the same events and
        crash again): it is dropped, counted and logged; the others still go out."""
        try:
            self.outbox.publish_many(decisions)
            return len(decisions)
        except ValueError:
            pass
        sent = 0
        for d in decisions:
            try:
                self.outbox.publish(d)
                sent += 1
            except ValueError as e:
                self.slot.add(F.DECISIONS_DROPPED)
                self.log.error("decision dropped: too large for the outbox", error=str(e)[:200],
                               kind=str(d.get("kind")), event=str(d.get("event"))[:80])
        return sent

    # ------------------------------------------------------------------ the switch
    def switch(self, polled: bool = False) -> bool:
        """Take every waiting record.  `polled`: no interrupt came (an inbox = "poll" role reading
        its inputs between slices), so there is no signal latency to record."""
        collecting = gc.isenabled()
        gc.disable()   # a collection due now waits for the next background slice
        try:
            return self._switch(polled)
        finally:
            if collecting:
                gc.enable()

    def _switch(self, polled: bool) -> bool:
        slot = self.slot
        t_seen = 0 if polled else self.t_seen
        if not polled:
            self.interrupt[0] = False
            slot.add(F.INTERRUPTS)
        sent_before = slot.get(F.SENT_NS)   # a newer one by the end: a boost this lower undoes
        t_paused = time.monotonic_ns()
        decode = self.kind.decode
        events: list[dict] = []
        for ring_name, reader in self.readers:
            while True:
                batch = reader.poll(256, commit=False)  # committed once decisions are out
                if batch.lost:
                    slot.add(F.EVENTS_LOST, batch.lost)
                    self.kind.on_lost(ring_name, batch.lost)
                for raw in batch.records:
                    try:
                        ev = decode(raw)
                    except ValueError:   # JSONDecodeError, an unknown tag, a malformed body
                        slot.add(F.EVENTS_LOST)
                        continue
                    ev["ring"] = ring_name
                    events.append(ev)
                if len(batch.records) < 256:
                    break
        if not events:
            for _, reader in self.readers:
                reader.commit()       # lost or undecodable records: nothing to act on
            if not polled:
                slot.add(F.COALESCED)
                if not self.keep_priority:
                    self._lower(sent_before)
            return False
        slot.set_state(State.SWITCHING)
        sent = 0 if polled else slot.get(F.SENT_NS)
        staged = self._stage(self.tm.slim_states())
        if not staged:   # too big for the staging page: straight to LMDB, within the budget
            self.checkpoint("switch", self.checkpoint_budget_s)
        t_saved = time.monotonic_ns()
        slot.set_state(State.HANDLING)
        t_handling = t_saved
        decisions = self.kind.handle(events)
        if decisions and self.outbox is not None:
            t_now = time.monotonic_ns()
            for d in decisions:  # exact per-record timings, for `syndicate bench switch`
                d["t_sent"], d["t_seen"], d["t_handling"], d["t_decided"] = \
                    sent, t_seen, t_handling, t_now
            slot.add(F.DECISIONS, self._publish_decisions(decisions))
        t_decided = time.monotonic_ns()
        # The events are acted on: only now does a restart stop seeing them (a role killed
        # before this line handles them again: at-least-once, never lost).
        for _, reader in self.readers:
            reader.commit()
        held = 0   # a source (it reads `reads` rings) is never boosted; a kind's thread first
        if not self.keep_priority:
            held = hold_for_kind(self.kind, self._wake_r, lambda: self.interrupt[0] or self.ops)
            self._lower(sent_before)
        if staged:  # safe in the staging page; the LMDB commit waits for the loop (committed
            # here it held up the *next* interrupt, p99 9 ms: DEVELOPING.md, "the atomic switch")
            self.commit_due = min(self.commit_due, time.monotonic() + SWITCH_COMMIT_S)
        slot.set_state(State.PAUSED if self.tm.paused else State.BACKGROUND)
        t_resumed = time.monotonic_ns() - held   # the kind's wait is not the switch's
        slot.add(F.SWITCHES)
        slot.add(F.EVENTS, len(events))
        if sent and t_seen >= sent:
            slot.observe(H.SIGNAL, t_seen - sent)
            slot.observe(H.SWITCH, t_handling - sent)
        if t_seen:
            slot.observe(H.PAUSE, t_paused - t_seen)
        slot.observe(H.SAVE, t_saved - t_paused)
        slot.observe(H.DECIDE, t_decided - t_handling)
        for ev in events:
            tw = ev.get("t_written")
            if isinstance(tw, int) and tw <= t_decided:
                slot.observe(H.EVENT, t_decided - tw)
        slot.observe(H.RESUME, t_resumed - t_decided)
        return True

    def _lower(self, sent_before: int) -> None:
        """To the background's class after a switch, unless another interrupt came meanwhile
        (a newer SENT_NS, or the flag): Background.lower_unless says why both."""
        slot, flag = self.slot, self.interrupt
        if self.bg.lower_unless(lambda: flag[0] or slot.get(F.SENT_NS) != sent_before,
                                self.wiring.role_boost_priority):
            self.reboosts += 1

    # ------------------------------------------------------------------ the loop
    def loop(self) -> None:
        slot, tm, flag = self.slot, self.tm, self.interrupt
        mono, mono_ns, perf_ns = time.monotonic, time.monotonic_ns, time.perf_counter_ns
        last_task = ""
        idle_marked = False
        while True:
            t_iter = perf_ns()
            slot.set(F.HEARTBEAT_NS, mono_ns())
            if self.ops:
                self._do_ops()
            if flag[0]:
                self.switch()
                continue
            if mono() >= self.next_checkpoint:
                self.checkpoint("interval")
            elif mono() >= self.commit_due:   # the last switches' staged state, in one commit
                self.commit_due = float("inf")
                self.checkpoint("switch", self.checkpoint_budget_s, staged=True)
            if self.poll_interval and mono() >= self.next_poll:
                self.next_poll = mono() + self.poll_interval
                if any(r.pending() for _, r in self.readers):
                    self.switch(polled=True)
            before = tm.slices
            busy_before = tm.busy_ns
            worked = tm.run_slice(flag)
            if worked:
                idle_marked = False
                if tm.current != last_task:
                    last_task = tm.current
                    slot.set_task(last_task)
                    if not tm.paused and slot.state != State.BACKGROUND:
                        slot.set_state(State.BACKGROUND)
                t_end = perf_ns()
                busy = tm.busy_ns - busy_before
                slot.add(F.BUSY_NS, busy)
                slot.add(F.DUE_NS, t_end - t_iter)
                slot.add(F.SLICES, tm.slices - before)
                slot.observe(H.SLICE, busy)
                continue
            # nothing runnable: sleep until something is due, an fd is ready, or a signal
            if not idle_marked and not tm.paused:
                slot.set_state(State.IDLE)
                slot.set_task("")
                last_task = ""
                idle_marked = True
            if os.getppid() != self.supervisor_pid:
                raise _Stop(0, "supervisor gone")
            timeout, rd, wr = tm.next_wakeup()
            cap = max(0.0, min(0.5, self.next_checkpoint - mono(), self.commit_due - mono()))
            timeout = cap if timeout is None else min(timeout, cap)
            try:
                r, _, _ = select.select([self._wake_r, *rd], wr, [], timeout)
            except InterruptedError:
                r = []
            if self._wake_r in r:
                drain(self._wake_r)
            if idle_marked and (tm.has_runnable() or tm.paused):
                idle_marked = False
                slot.set_state(State.PAUSED if tm.paused else State.BACKGROUND)

    def stop(self, reason: str) -> None:
        self.slot.set_state(State.STOPPING)
        self.slot.set_task("")
        ok = self.checkpoint("stop")
        if self.kind is not None:
            try:
                self.kind.on_stop()
            except Exception as e:
                self.log.error("on_stop failed", error=repr(e))
        if self.saver is not None:
            st = self.saver.statistics()
            self.log.info("checkpoint statistics", saves=st.saves, inline=st.inline, late=st.late,
                          overruns=st.overruns, failures=st.failures, hold_p50_us=round(
                              st.hold_p50_us, 1), hold_p99_us=round(st.hold_p99_us, 1))
        self._info.close()
        if self.store is not None:
            try:
                self.store.close()
            except Exception as e:
                self.log.error("store close failed", error=repr(e))
        self.log.info("role stopped", reason=reason, checkpoint="saved" if ok else "FAILED",
                      kept_boost=self.reboosts)


def role_main(cfg, role_cfg, wiring: "Wiring", log) -> "NoReturn":  # noqa: F821
    """Entry point in the forked child.  Never returns: exits with the role's status."""
    code = 1
    try:
        try:
            import setproctitle
            setproctitle.setproctitle(f"syndicate: {role_cfg.name}")
        except ImportError:  # pragma: no cover - setproctitle is a dependency
            pass
        rt = RoleRuntime(cfg, role_cfg, wiring, log)
        set_parent_death_signal(signal.SIGTERM)
        rt.install_signals()
        if os.getppid() != wiring.supervisor_pid:   # the supervisor died before PDEATHSIG
            os._exit(0)
        sys.setswitchinterval(0.0005)  # a store writer thread must not hold up the handler long
        try:
            rt.start()
            rt.loop()
        except _Stop as s:
            rt.stop(s.reason)
            code = s.code
        except Exception as e:
            log.error("role crashed", error=repr(e))
            import traceback
            traceback.print_exc()
            try:
                rt.stop(f"crash: {e!r}")
            except Exception:
                pass
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
