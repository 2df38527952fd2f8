"""The supervisor (`syndicate run`): forks one process per role and keeps them running.

    syndicate run ─► validate engine.toml (engine/core/run.py; exit 2 on any error, nothing started)
                 ─► the machine-wide owner lock (engine/core/owner.py), then the run dir;
                    a dead predecessor's leftovers are removed, a live one means refuse
                 ─► shared memory: control block + rings (/syn.<name>.*), then fork roles
                 ─► loop:  signals (queued by handlers) ─► handle_<name>: stop / reload
                           (planned by engine/core/reload.py) / checkpoint / report
                           waitpid(-1, WNOHANG) ─► restart policy (engine/core/policy.py)
                           restarts that are due ─► fork
                           watchdog: memory, CPU, heartbeat (engine/core/watchdog.py)
                 ─► stop: TERM every role, grace, KILL; unlink shared memory; remove run dir

After gunicorn's arbiter (STYLE.md): a handler only queues the signal and writes a byte to a
pipe; the loop sleeps in select() on it, dispatches by name, and reaps unknown pids too.  Roles
are forked from here (they inherit the shared memory) and open the LMDB store themselves.

Rings, derived from engine.toml (`Wiring`, engine/core/wiring.py):
    events.<chain>   written by the source role of that chain (a monitor), read by the roles
                     that list the chain and subscribe (they are interrupted on each batch)
    out.<role>       written by that role (its decisions), read by roles with inbox =
                     "interrupt" (interrupted) or "poll" (read in background)
"""
from __future__ import annotations

import os
import queue
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable

from .. import config as config_mod
from .control import ControlBlock, F, State
from .log import Log
from .metrics_http import NO_SERVER
from .owner import LOCK, OwnerLock, RunDir
from .policy import RestartPolicy, describe_status
from .reload import plan_reload
from .ring import Ring
from .signals import FORK_BLOCKED, SIG_CHECKPOINT, SUPERVISOR_SIGNALS, can_boost, drain
from .staging import Staging
from .status import report
from .watchdog import Watchdog
from .wiring import MAX_ROLES, Wiring, plan_rings, remove_segments, segment_name

def sources_of(kinds: dict[str, type]) -> set[str]:
    """The roles whose kind is an event source (a monitor)."""
    return {n for n, k in kinds.items() if k.source}   # RoleKind declares it


@dataclass
class Child:
    role: str
    pid: int
    started: float
    slot: int


class Supervisor:
    def __init__(self, cfg: config_mod.EngineConfig, *, log: Log, kinds: dict[str, type],
                 resolve_kind: Callable[[str], type], role_main: Callable[..., None],
                 clock: Callable[[], float] = time.monotonic, fork: Callable[[], int] = os.fork,
                 waitpid: Callable[[int, int], tuple[int, int]] = os.waitpid,
                 kill: Callable[[int, int], None] = os.kill):
        """`resolve_kind` (a dotted path to a role kind) and `role_main` (a forked role's
        body, never returns) come from engine/core/role.py through the entry point
        (engine/core/run.py), so the supervisor and the role process share only the wiring.
        `clock`, `fork`, `waitpid` and `kill` are seams: tests drive the supervisor's decisions
        with fakes, without processes (tests/core/test_supervisor_decisions.py)."""
        self.resolve_kind, self.role_main = resolve_kind, role_main
        self.clock, self.fork, self.waitpid, self.kill = clock, fork, waitpid, kill
        self.cfg = cfg
        self.log = log
        self.kinds = kinds
        self.name = cfg.name
        self.pid = os.getpid()
        self.owner = OwnerLock(self.name)
        self.rundir = RunDir(cfg.run_dir, cfg.log_path)
        self.children: dict[int, Child] = {}         # pid -> child
        self.restart_at: dict[str, float] = {}       # role -> monotonic time to (re)start
        self.sigq: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stopping = False
        self.stop_deadline: float | None = None
        self.exit_code = 0
        self.exit_reason = ""
        self.reload_pending: set[str] = set()        # roles to start with new config on exit
        self.retired: set[str] = set()               # roles removed by a reload
        sup = cfg.supervisor
        self.policy = RestartPolicy(max_restarts=sup["max_restarts"],
                                    restart_window=sup["restart_window"],
                                    backoff_initial=sup["backoff_initial"],
                                    backoff_max=sup["backoff_max"], clock=self.clock)
        self.store = None
        self.wiring: Wiring | None = None
        self.watchdog: Watchdog | None = None
        self.metrics = NO_SERVER                     # the /metrics server ([metrics] listen)
        self.patch: dict | None = None               # laid over engine.toml at each reload
        self.ticker = None      # .tick(self) at .due from the loop: summary, --duration (run_cli)
        self._wake_r = self._wake_w = -1
        self._rings_created: list[str] = []

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        self.sigq.put_nowait(signum)

    def install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        SUPERVISOR_SIGNALS.install(self, self._on_signal)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        # the machine-wide lock first: until it is ours, nothing of this name may be touched
        stale = self.owner.acquire(str(cfg.run_dir.parent.parent))
        stale = self.rundir.acquire() or stale
        removed = remove_segments(self.name, keep=(LOCK,))
        if stale or removed:
            self.log.warning("cleaned up after a supervisor that did not stop cleanly",
                             segments=len(removed))
        self.install_signals()
        self.build()

    def build(self) -> None:
        """Shared memory, wiring, store and watchdog (after the locks: `setup`)."""
        cfg = self.cfg
        roles = [r for r in cfg.roles.values() if r.enabled]
        if len(roles) > MAX_ROLES:
            raise config_mod.ConfigError(f"{cfg.path}: roles: at most {MAX_ROLES} enabled roles")
        control = ControlBlock.create(self.name, MAX_ROLES, self.pid)
        self._rings_created.append(control.name)
        staging = Staging.create(self.name, MAX_ROLES)
        self._rings_created.append(staging.name)
        sw = cfg.switch
        boost_ok = sw["boost"] == "fifo" and can_boost(sw["monitor_rt_priority"])
        if sw["boost"] == "fifo" and not boost_ok:
            self.log.warning("SCHED_FIFO not permitted (run as root or raise RLIMIT_RTPRIO): "
                             "interrupts will wait for the scheduler; see README")
        self.wiring = Wiring(control=control, supervisor_pid=self.pid, slots={},
                             role_boost_priority=sw["role_rt_priority"] if boost_ok else None,
                             monitor_priority=sw["monitor_rt_priority"] if boost_ok else None,
                             map_size=config_mod.parse_size(cfg.store["map_size"]),
                             staging=staging)
        self._apply_wiring(cfg)
        self._open_store()
        self.watchdog = Watchdog(cfg.watchdog, control=self.wiring.control,
                                 children=lambda: list(self.children.values()),
                                 limits=self.memory_limits, event=self.event, kill=self.kill,
                                 clock=self.clock)
        from .metrics import start   # prometheus_client only for an engine that serves it
        self.metrics = start(cfg, control, kinds=lambda: self.kinds, log=self.log)
        self.log.info("supervisor started", engine=self.name, roles=len(roles), run_dir=str(
            cfg.run_dir), boost="on" if boost_ok else "off", mode=cfg.engine["mode"])

    def _apply_wiring(self, cfg: config_mod.EngineConfig) -> None:
        w = self.wiring
        plan = plan_rings(cfg, sources_of(self.kinds))
        for r in cfg.roles.values():
            if r.enabled and r.name not in w.slots:
                used = set(w.slots.values())
                idx = next(i for i in range(MAX_ROLES) if i not in used)
                w.slots[r.name] = idx
                w.control.slot(idx).reset(r.name)
                w.staging.clear(idx)
        rc = cfg.rings
        for ring in set(plan["subscribers"]):
            if ring not in w.rings:
                events = ring.startswith("events.")
                slots = rc["event_slots"] if events else rc["inbox_slots"]
                name = segment_name(self.name, ring)
                size = rc["slot_size"] if events else rc["outbox_slot_size"]
                w.rings[ring] = Ring.create(name, slots=slots, slot_size=size, max_readers=MAX_ROLES)
                self._rings_created.append(name)
        w.emits, w.inputs = plan["emits"], plan["inputs"]
        w.outputs, w.subscribers = plan["outputs"], plan["subscribers"]
        # Register every reader now, at the current end of its ring: a role always resumes
        # from its committed cursor, so nothing published between this moment and its start
        # is missed, and a role added by a reload does not replay the ring's history.
        for role, rings in w.inputs.items():
            for ring in rings:
                w.rings[ring].reserve_reader(w.slots[role])

    def _open_store(self) -> None:
        from .store import Store
        path = self.cfg.store_path
        path.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(path, durability=self.cfg.store["durability"],
                                map_size=self.wiring.map_size)
        self.store.reader_check()

    def memory_limits(self, role: str) -> tuple[int, int] | None:
        """The watchdog's limits for `role` (None: removed by a reload, on its way out)."""
        rc = self.cfg.roles.get(role)
        return None if rc is None else (rc.memory_soft, rc.memory_hard)

    def event(self, kind: str, **fields) -> None:
        """Something the supervisor or watchdog did: to the log and to the `events` database."""
        level = fields.pop("level", "info")
        self.log.log(level, kind.replace("_", " "), **fields)
        if self.store is not None:
            try:
                self.store.log_event(kind, **fields)
            except Exception as e:
                self.log.error("could not record event in the store", error=repr(e))

    # ------------------------------------------------------------------ children
    def spawn(self, role: str) -> None:
        rc = self.cfg.roles[role]
        w = self.wiring
        idx = w.slots[role]
        slot = w.control.slot(idx)
        slot.set_state(State.STARTING)
        sys.stdout.flush()
        sys.stderr.flush()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        try:
            pid = self.fork()
        except OSError as e:   # EAGAIN/ENOMEM: try again later rather than die
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self.event("fork_failed", role=role, error=str(e), level="error", action="retry in 1 s")
            slot.set_state(State.RESTARTING)
            self.restart_at[role] = self.clock() + 1.0
            return
        if pid == 0:  # child: never returns; role_main unblocks once its handlers are set
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.rundir.lock_fd is not None:
                os.close(self.rundir.lock_fd)
            self.owner.close_in_child()
            if self.watchdog is not None:
                self.watchdog.close_all()
            self.metrics.close_in_child()    # its sockets stay the supervisor's alone
            self.role_main(self.cfg, rc, w, self.log.reopen(role))
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        slot.set(F.PID, pid)
        self.children[pid] = Child(role, pid, self.clock(), idx)
        self.rundir.write_role(role, pid)
        self.log.info("role started", role=role, pid=pid)

    def reap(self) -> None:
        while True:
            try:
                pid, status = self.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue  # not ours (e.g. a helper a library forked): tolerate
            self.on_exit(child, status)

    def on_exit(self, child: Child, status: int) -> None:
        role = child.role
        slot = self.wiring.control.slot(child.slot)
        code = 1000 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        slot.set(F.LAST_EXIT, code)
        if slot.state in (State.SWITCHING, State.HANDLING):   # the guide's switch success
            slot.add(F.SWITCHES_BROKEN)
        if slot.get(F.PID) == child.pid:
            slot.set(F.PID, 0)
        self.rundir.remove_role(role)
        if self.store is not None:
            try:
                self.store.reader_check()
            except Exception:
                pass
        if self.watchdog:
            self.watchdog.forget(child.pid)
        what = describe_status(status)
        if role in self.retired:
            slot.set_state(State.STOPPED)
            self.event("role_retired", role=role, pid=child.pid, status=what)
            return
        if role in self.reload_pending and not self.stopping:
            self.reload_pending.discard(role)
            self.policy.forget(role)
            slot.set_state(State.RESTARTING)
            self.restart_at[role] = self.clock()
            self.event("role_reloaded", role=role, pid=child.pid, status=what)
            return
        verdict = self.policy.on_exit(
            role, self.cfg.roles[role].restart, status, child.started, stopping=self.stopping,
            stopped_by_watchdog=bool(self.watchdog and self.watchdog.was_acted(child.pid)))
        if self.stopping:
            slot.set_state(State.STOPPED)
            self.log.info("role exited", role=role, pid=child.pid, status=what)
            return
        if verdict.give_up:
            slot.set_state(State.STOPPED)
            self.event("restart_intensity_exceeded", role=role, reason=verdict.reason,
                       level="error")
            self.exit_code, self.exit_reason = 1, verdict.reason
            self.begin_stop("restart intensity exceeded")
            return
        if verdict.restart:
            slot.add(F.RESTARTS)
            slot.set_state(State.RESTARTING)
            self.restart_at[role] = self.clock() + verdict.delay
            self.event("role_exited", role=role, pid=child.pid, status=what,
                       action=f"restart in {verdict.delay:.2f}s",
                       level="warning" if not verdict.reason.endswith("requested") else "info")
        else:
            slot.set_state(State.STOPPED)
            self.event("role_exited", role=role, pid=child.pid, status=what,
                       action="not restarted", reason=verdict.reason)

    def start_due(self) -> None:
        now = self.clock()
        for role, at in list(self.restart_at.items()):
            if at <= now and not self.stopping:
                del self.restart_at[role]
                self.spawn(role)

    def pid_of(self, role: str) -> int | None:
        for c in self.children.values():
            if c.role == role:
                return c.pid
        return None

    def signal_roles(self, sig: int, roles: list[str] | None = None) -> None:
        for c in list(self.children.values()):
            if roles is None or c.role in roles:
                try:
                    self.kill(c.pid, sig)
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ operator actions
    def begin_stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.restart_at.clear()
        self.stop_deadline = self.clock() + self.cfg.engine["grace"]
        self.log.info("stopping: every role checkpoints and exits", why=why,
                      grace=self.cfg.engine["grace"])
        self.signal_roles(signal.SIGTERM)

    def handle_signal(self, sig: int) -> None:
        SUPERVISOR_SIGNALS.dispatch(self, sig)

    def handle_chld(self) -> None:   # reaping happens every turn
        pass

    def handle_term(self) -> None:
        self.begin_stop("SIGTERM")

    def handle_int(self) -> None:
        if self.stopping:
            self.log.warning("second SIGINT: killing every role now")
            self.signal_roles(signal.SIGKILL)
            return
        self.begin_stop("SIGINT")

    def handle_hup(self) -> None:
        self.reload()

    def handle_checkpoint(self) -> None:
        self.log.info("checkpoint requested for every role")
        self.signal_roles(SIG_CHECKPOINT)

    def handle_status(self) -> None:
        p = self.rundir.write_status(report(self.wiring.control, self.name, self.rundir.path))
        self.log.info("status report written", path=str(p))

    def describe_kind(self, path: str):
        """What the kind at `path` declares (its options and tasks), for the config check."""
        return self.resolve_kind(path).spec()

    def reload(self) -> None:
        if self.stopping:
            return
        try:
            # what the command line overrode stays overridden
            new = config_mod.with_overrides(config_mod.load(self.cfg.path, patch=self.patch,
                                                            describe=self.describe_kind), name=self.name,
                                            state_dir=self.cfg.engine["state_dir"],
                                            log_format=self.cfg.engine["log_format"])
            kinds = {r.name: self.resolve_kind(r.kind) for r in new.roles.values() if r.enabled}
        except (config_mod.ConfigError, ImportError, TypeError) as e:
            self.event("reload_refused", error=str(e), level="error")
            return
        merged = {**self.kinds, **kinds}
        plan = plan_reload(self.cfg, new, sources=sources_of(merged),
                           lifetime_roles=set(self.wiring.slots))
        if plan.refused:
            self.event("reload_refused", level="error", error=plan.refused)
            return
        if plan.fixed:
            self.log.warning("reload: these sections need a full restart and were not applied",
                             sections=",".join(plan.fixed))
        self.kinds, self.cfg = merged, plan.config
        self._apply_wiring(plan.config)
        self.event("reload", changed=",".join(sorted(plan.changed)) or "-",
                   added=",".join(sorted(plan.added)) or "-",
                   removed=",".join(sorted(plan.removed)) or "-")
        for n in plan.removed:
            self.retired.add(n)
            self.restart_at.pop(n, None)
            self.signal_roles(signal.SIGTERM, [n])
        for n in plan.changed:
            if self.pid_of(n):
                self.reload_pending.add(n)
                self.signal_roles(signal.SIGTERM, [n])
            else:
                self.restart_at[n] = self.clock()
        for n in plan.added:
            self.retired.discard(n)
            self.restart_at[n] = self.clock()

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        for role in [r.name for r in self.cfg.roles.values() if r.enabled]:
            self.spawn(role)
        interval = self.cfg.watchdog["interval_ms"] / 1000.0
        next_watch = self.clock() + interval
        while True:
            now = self.clock()
            timeouts = [next_watch - now]
            if self.restart_at:
                timeouts.append(min(self.restart_at.values()) - now)
            if self.stop_deadline is not None:
                timeouts.append(self.stop_deadline - now)
            if self.ticker is not None:
                timeouts.append(self.ticker.due - now)
            try:
                r, w, _ = select.select([self._wake_r, *self.metrics.rfds()], self.metrics.wfds(),
                                        [], max(0.0, min(timeouts)))
            except InterruptedError:
                r = w = []
            self.metrics.step(r, w)
            drain(self._wake_r)
            while True:
                try:
                    self.handle_signal(self.sigq.get_nowait())
                except queue.Empty:
                    break
            self.reap()
            if self.ticker is not None and self.clock() >= self.ticker.due:
                self.ticker.tick(self)
            if self.stopping:
                if not self.children:
                    break
                if self.stop_deadline is not None and self.clock() >= self.stop_deadline:
                    left = sorted(c.role for c in self.children.values())
                    self.log.warning("grace period over: killing", roles=",".join(left))
                    self.signal_roles(signal.SIGKILL)
                    self.stop_deadline = None
                continue
            self.start_due()
            if self.clock() >= next_watch:
                try:
                    self.watchdog.tick()
                except Exception as e:  # a watchdog bug must not take the engine down
                    self.log.error("watchdog failed", error=repr(e))
                next_watch = self.clock() + interval
        return self.exit_code

    def cleanup(self) -> None:
        """Every exit path ends here: no process, no segment, no run dir left."""
        for c in list(self.children.values()):
            try:
                self.kill(c.pid, signal.SIGKILL)
                self.waitpid(c.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.children.clear()
        self.metrics.close()
        if self.wiring is not None:
            for ring in self.wiring.rings.values():
                try:
                    ring.close()
                except Exception:
                    pass
            self.wiring.control.close()
            if self.wiring.staging is not None:
                self.wiring.staging.close()
        for name in self._rings_created:
            try:
                os.unlink(f"/dev/shm/{name.lstrip('/')}")
            except FileNotFoundError:
                pass
        remove_segments(self.name, keep=(LOCK,))
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                pass
        self.rundir.remove()
        self.owner.release()     # last: until here the segments of this name are ours
