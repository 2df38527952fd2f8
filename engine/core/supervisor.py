"""The supervisor (`syndicate run`): forks one process per role and keeps them running.

    syndicate run ─► validate engine.toml (exit 2 on any error, nothing started)
                 ─► run dir: take the lock; a dead predecessor's leftovers are removed,
                    a live one means refuse to start
                 ─► shared memory: control block + rings (/syn.<name>.*), then fork roles
                 ─► loop:  signals (queued by handlers) ─► stop / reload / checkpoint / report
                           waitpid(-1, WNOHANG) ─► restart policy (engine/core/policy.py)
                           restarts that are due ─► fork
                           watchdog: memory, CPU, heartbeat (engine/core/watchdog.py)
                 ─► stop: TERM every role, grace, KILL; unlink shared memory; remove run dir

Mechanism after gunicorn's arbiter (STYLE.md): a handler only queues the signal number and
writes a byte to a pipe; the loop sleeps in select() on that pipe and dispatches by name.
Reaping tolerates unknown pids.  Roles are forked from this process, so they inherit the shared
memory mappings; each role opens the LMDB store itself after fork.

Rings, derived from engine.toml (`Wiring`):
    events.<chain>   written by the source role of that chain (a monitor), read by the roles
                     that list the chain and subscribe (they are interrupted on each batch)
    out.<role>       written by that role (its decisions), read by roles with inbox =
                     "interrupt" (interrupted) or "poll" (read in background)
"""
from __future__ import annotations

import argparse
import fcntl
import os
import queue
import select
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .. import config as config_mod
from .control import ControlBlock, F, State
from .log import Log
from .policy import RestartPolicy, describe_status
from .ring import Ring
from .role import resolve_kind, role_main
from .signals import FORK_BLOCKED, can_boost, signame
from .staging import Staging
from .status import report
from .watchdog import Watchdog

MAX_ROLES = 32
SEGMENT_PREFIX = "syn."


@dataclass
class Wiring:
    """Who reads and writes which ring; built from the config, inherited by every role."""
    control: ControlBlock
    supervisor_pid: int
    slots: dict[str, int]
    rings: dict[str, Ring] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    emits: dict[str, list[str]] = field(default_factory=dict)
    subscribers: dict[str, list[str]] = field(default_factory=dict)
    role_boost_priority: int | None = None
    monitor_priority: int | None = None
    map_size: int = 1 << 30
    staging: Staging | None = None


def plan_rings(cfg: config_mod.EngineConfig, sources: set[str]) -> dict:
    """Ring names, readers, writers and interrupt targets for the enabled roles."""
    roles = [r for r in cfg.roles.values() if r.enabled]
    emits, inputs, outputs, subs = {}, {r.name: [] for r in roles}, {}, {}
    for r in roles:
        if r.name in sources:
            emits[r.name] = [f"events.{c}" for c in r.chains]
            for ring in emits[r.name]:
                subs.setdefault(ring, [])
        else:
            outputs[r.name] = f"out.{r.name}"
            subs.setdefault(outputs[r.name], [])
    for r in roles:
        if r.name in sources:
            continue
        if r.subscribe:
            for c in r.chains:
                ring = f"events.{c}"
                if ring in subs:
                    inputs[r.name].append(ring)
                    subs[ring].append(r.name)
        if r.inbox != "none":
            for other, ring in outputs.items():
                if other != r.name:
                    inputs[r.name].append(ring)
                    if r.inbox == "interrupt":
                        subs[ring].append(r.name)
    return {"emits": emits, "inputs": inputs, "outputs": outputs, "subscribers": subs}


def segment_name(engine: str, ring: str) -> str:
    return f"/{SEGMENT_PREFIX}{engine}.{ring}"


def leftover_segments(engine: str) -> list[str]:
    prefix = f"{SEGMENT_PREFIX}{engine}."
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def remove_segments(engine: str) -> list[str]:
    removed = []
    for n in leftover_segments(engine):
        try:
            os.unlink(f"/dev/shm/{n}")
            removed.append(n)
        except FileNotFoundError:
            pass
    return removed


class AlreadyRunning(Exception):
    pass


class RunDir:
    """state_dir/run/<name>: the lock (supervisor.pid), role pid files, status report, log link.

    The lock is an flock on supervisor.pid held for the supervisor's life: the kernel drops it
    when the process dies however it dies, so a stale file never blocks a new start."""

    def __init__(self, path: Path, log_path: Path):
        self.path, self.log_path = path, log_path
        self.lock_fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; returns True if a dead predecessor left this directory behind."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "roles").mkdir(exist_ok=True)
        pidfile = self.path / "supervisor.pid"
        fd = os.open(pidfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"a supervisor of this name is running (pid {other}, "
                                 f"run dir {self.path})")
        stale = os.fstat(fd).st_size > 0
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd
        for f in (self.path / "roles").iterdir():
            f.unlink(missing_ok=True)
        link = self.path / "log"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(self.log_path, link)
        return stale

    def write_role(self, role: str, pid: int) -> None:
        tmp = self.path / "roles" / f".{role}.tmp"
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.path / "roles" / f"{role}.pid")

    def remove_role(self, role: str) -> None:
        (self.path / "roles" / f"{role}.pid").unlink(missing_ok=True)

    def write_status(self, doc: dict) -> Path:
        p = self.path / "status.json"
        tmp = self.path / ".status.json.tmp"
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        tmp.replace(p)
        return p

    def remove(self) -> None:
        """Leave nothing: the directory goes (the log itself lives in state_dir/log)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        try:
            self.path.parent.rmdir()  # state_dir/run, if no other engine uses it
        except OSError:
            pass


@dataclass
class Child:
    role: str
    pid: int
    started: float
    slot: int


class Supervisor:
    def __init__(self, cfg: config_mod.EngineConfig, *, log: Log, kinds: dict[str, type]):
        self.cfg = cfg
        self.log = log
        self.kinds = kinds
        self.name = cfg.name
        self.pid = os.getpid()
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
                                    backoff_max=sup["backoff_max"], clock=time.monotonic)
        self.store = None
        self.wiring: Wiring | None = None
        self.watchdog: Watchdog | None = None
        self._wake_r = self._wake_w = -1
        self._rings_created: list[str] = []

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:
        self.sigq.put_nowait(signum)

    def install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGCHLD):
            signal.signal(s, self._on_signal)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        stale = self.rundir.acquire()
        removed = remove_segments(self.name)
        if stale or removed:
            self.log.warning("cleaned up after a supervisor that did not stop cleanly",
                             segments=len(removed))
        self.install_signals()
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
        self.watchdog = Watchdog(self, cfg.watchdog)
        self.log.info("supervisor started", engine=self.name, roles=len(roles),
                      run_dir=str(cfg.run_dir), boost="on" if boost_ok else "off",
                      mode=cfg.engine["mode"])

    def _apply_wiring(self, cfg: config_mod.EngineConfig) -> None:
        w = self.wiring
        sources = {n for n, k in self.kinds.items() if getattr(k, "source", False)}
        plan = plan_rings(cfg, sources)
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
                slots = rc["event_slots"] if ring.startswith("events.") else rc["inbox_slots"]
                name = segment_name(self.name, ring)
                w.rings[ring] = Ring.create(name, slots=slots, slot_size=rc["slot_size"],
                                            max_readers=MAX_ROLES)
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
            pid = os.fork()
        except OSError as e:   # EAGAIN/ENOMEM: try again later rather than die
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self.event("fork_failed", role=role, error=str(e), level="error", action="retry in 1 s")
            slot.set_state(State.RESTARTING)
            self.restart_at[role] = time.monotonic() + 1.0
            return
        if pid == 0:  # child: never returns; role_main unblocks once its handlers are set
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.rundir.lock_fd is not None:
                os.close(self.rundir.lock_fd)
            if self.watchdog is not None:
                self.watchdog.close_all()
            role_main(self.cfg, rc, w, self.log.reopen(role))
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        slot.set(F.PID, pid)
        self.children[pid] = Child(role, pid, time.monotonic(), idx)
        self.rundir.write_role(role, pid)
        self.log.info("role started", role=role, pid=pid)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
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
            self.restart_at[role] = time.monotonic()
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
            self.restart_at[role] = time.monotonic() + verdict.delay
            self.event("role_exited", role=role, pid=child.pid, status=what,
                       action=f"restart in {verdict.delay:.2f}s",
                       level="warning" if not verdict.reason.endswith("requested") else "info")
        else:
            slot.set_state(State.STOPPED)
            self.event("role_exited", role=role, pid=child.pid, status=what,
                       action="not restarted", reason=verdict.reason)

    def start_due(self) -> None:
        now = time.monotonic()
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
                    os.kill(c.pid, sig)
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ operator actions
    def begin_stop(self, why: str) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.restart_at.clear()
        self.stop_deadline = time.monotonic() + self.cfg.engine["grace"]
        self.log.info("stopping: every role checkpoints and exits", why=why,
                      grace=self.cfg.engine["grace"])
        self.signal_roles(signal.SIGTERM)

    def handle_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaping happens every turn
        if sig in (signal.SIGTERM, signal.SIGINT):
            if self.stopping and sig == signal.SIGINT:
                self.log.warning("second SIGINT: killing every role now")
                self.signal_roles(signal.SIGKILL)
                return
            self.begin_stop(signame(sig))
        elif sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGUSR1:
            self.log.info("checkpoint requested for every role")
            from .signals import SIG_CHECKPOINT
            self.signal_roles(SIG_CHECKPOINT)
        elif sig == signal.SIGUSR2:
            p = self.rundir.write_status(report(self.wiring.control, self.name, self.rundir.path))
            self.log.info("status report written", path=str(p))

    def reload(self) -> None:
        if self.stopping:
            return
        try:
            # what the command line overrode stays overridden
            new = config_mod.with_overrides(config_mod.load(self.cfg.path), name=self.name,
                                            state_dir=self.cfg.engine["state_dir"],
                                            log_format=self.cfg.engine["log_format"])
            kinds = {r.name: resolve_kind(r.kind) for r in new.roles.values() if r.enabled}
        except (config_mod.ConfigError, ImportError, TypeError) as e:
            self.event("reload_refused", error=str(e), level="error")
            return
        fixed = [s for s in ("engine", "rings", "switch", "store")
                 if getattr(new, s) != getattr(self.cfg, s)]
        if fixed:
            self.log.warning("reload: these sections need a full restart and were not applied",
                             sections=",".join(fixed))
            new = config_mod.EngineConfig(**{**new.__dict__, **{s: getattr(self.cfg, s)
                                                                for s in fixed}})
        old_roles = {n: r for n, r in self.cfg.roles.items() if r.enabled}
        new_roles = {n: r for n, r in new.roles.items() if r.enabled}
        if len(set(self.wiring.slots) | set(new_roles)) > MAX_ROLES:
            self.event("reload_refused", level="error", error=(
                f"more than {MAX_ROLES} roles in this engine's life (a control-block slot each); "
                "restart the engine to use the new set"))
            return
        old_plan = (self.wiring.inputs, self.wiring.subscribers)
        self.kinds = {**self.kinds, **kinds}
        changed = {n for n in new_roles if n in old_roles and new_roles[n] != old_roles[n]}
        if new.manifest != self.cfg.manifest:   # endpoints moved: every role may use them
            changed |= {n for n in new_roles if n in old_roles}
        added = set(new_roles) - set(old_roles)
        removed = set(old_roles) - set(new_roles)
        self.cfg = new
        self._apply_wiring(new)
        # A role whose rings or interrupt targets changed must restart to pick them up.
        for n in new_roles:
            if n in old_roles and (old_plan[0].get(n) != self.wiring.inputs.get(n)):
                changed.add(n)
        for ring, subs in self.wiring.subscribers.items():
            if old_plan[1].get(ring) != subs:
                writers = [n for n, rings in self.wiring.emits.items() if ring in rings] + \
                          [n for n, out in self.wiring.outputs.items() if out == ring]
                changed.update(w for w in writers if w in old_roles)
        self.event("reload", changed=",".join(sorted(changed)) or "-",
                   added=",".join(sorted(added)) or "-", removed=",".join(sorted(removed)) or "-")
        for n in removed:
            self.retired.add(n)
            self.restart_at.pop(n, None)
            self.signal_roles(signal.SIGTERM, [n])
        for n in changed:
            if self.pid_of(n):
                self.reload_pending.add(n)
                self.signal_roles(signal.SIGTERM, [n])
            else:
                self.restart_at[n] = time.monotonic()
        for n in added:
            self.retired.discard(n)
            self.restart_at[n] = time.monotonic()

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        for role in [r.name for r in self.cfg.roles.values() if r.enabled]:
            self.spawn(role)
        interval = self.cfg.watchdog["interval_ms"] / 1000.0
        next_watch = time.monotonic() + interval
        while True:
            now = time.monotonic()
            timeouts = [next_watch - now]
            if self.restart_at:
                timeouts.append(min(self.restart_at.values()) - now)
            if self.stop_deadline is not None:
                timeouts.append(self.stop_deadline - now)
            try:
                select.select([self._wake_r], [], [], max(0.0, min(timeouts)))
            except InterruptedError:
                pass
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    self.handle_signal(self.sigq.get_nowait())
                except queue.Empty:
                    break
            self.reap()
            if self.stopping:
                if not self.children:
                    break
                if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
                    left = sorted(c.role for c in self.children.values())
                    self.log.warning("grace period over: killing", roles=",".join(left))
                    self.signal_roles(signal.SIGKILL)
                    self.stop_deadline = None
                continue
            self.start_due()
            if time.monotonic() >= next_watch:
                try:
                    self.watchdog.tick()
                except Exception as e:  # a watchdog bug must not take the engine down
                    self.log.error("watchdog failed", error=repr(e))
                next_watch = time.monotonic() + interval
        return self.exit_code

    def cleanup(self) -> None:
        """Every exit path ends here: no process, no segment, no run dir left."""
        for c in list(self.children.values()):
            try:
                os.kill(c.pid, signal.SIGKILL)
                os.waitpid(c.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.children.clear()
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
        remove_segments(self.name)
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                pass
        self.rundir.remove()


# ------------------------------------------------------------------------------ entry point
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="syndicate run", description=(
        "Start the supervisor: one process per role in engine.toml, restarted by policy, "
        "controlled by signals (see README: Signals)."))
    p.add_argument("-c", "--config", default="engine.toml", help="configuration file "
                   "(default: ./engine.toml)")
    p.add_argument("--name", help="engine instance name (default: [engine] name); two engines "
                   "with different names run side by side")
    p.add_argument("--state-dir", help="override [engine] state_dir")
    p.add_argument("--log-format", choices=("text", "json"), help="override [engine] log_format")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    return p


def load_checked(args) -> tuple[config_mod.EngineConfig, dict[str, type]]:
    cfg = config_mod.load(args.config)
    cfg = config_mod.with_overrides(cfg, name=args.name, state_dir=args.state_dir,
                                    log_format=args.log_format)
    kinds = {}
    for r in cfg.roles.values():
        if not r.enabled:
            continue
        try:
            kinds[r.name] = resolve_kind(r.kind)
        except (ImportError, TypeError) as e:
            raise config_mod.ConfigError(f"{cfg.path}: roles.{r.name}.kind: {e}")
        if getattr(kinds[r.name], "source", False) and not r.chains:
            raise config_mod.ConfigError(f"{cfg.path}: roles.{r.name}.chains: a source role "
                                         "needs the chains it watches")
    return cfg, kinds


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg, kinds = load_checked(args)
    except config_mod.ConfigError as e:
        print(f"syndicate: configuration error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{cfg.path}: ok ({sum(r.enabled for r in cfg.roles.values())} roles)")
        return 0
    try:
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"syndicate: cannot create {cfg.log_path.parent}: {e.strerror}", file=sys.stderr)
        return 2
    log = Log("supervisor", fmt=cfg.engine["log_format"], level=cfg.engine["log_level"],
              path=cfg.log_path)
    sup = Supervisor(cfg, log=log, kinds=kinds)
    try:
        try:
            sup.setup()
        except AlreadyRunning as e:
            log.error(f"refusing to start: {e}")
            return 2
        except config_mod.ConfigError as e:
            log.error(f"configuration error: {e}")
            return 2
        except OSError as e:   # a state dir that is a file, not writable, a full disk…
            log.error(f"cannot set up: {e.strerror or e}"
                      + (f": {e.filename}" if getattr(e, "filename", None) else ""))
            return 2
        except Exception as e:
            from .store import StoreError
            if isinstance(e, StoreError):   # not a store, a newer schema, a corrupt file
                log.error(f"cannot open the store: {e}")
                return 2
            raise
        code = sup.run()
        if code:
            log.error("supervisor exiting", code=code, reason=sup.exit_reason)
        else:
            log.info("supervisor stopped", code=0)
        return code
    finally:
        if sup.rundir.lock_fd is not None or sup.wiring is not None:
            sup.cleanup()
        log.close()


main_run = main
