"""The watchdog, run by the supervisor every `interval_ms`: memory, CPU and heartbeat per role.

Memory figure: `RssAnon` (read as resident − shared from /proc/PID/statm), i.e. the role's resident *anonymous* memory —
its Python heap, stacks and malloc arenas.  It leaves out what every role maps in common: the
shared-memory rings and control block (RssShmem) and the LMDB map (a file mapping, RssFile),
which RSS would charge to every role in full.  Why not USS (psutil's memory_full_info): it
costs 250-1300 µs a call (it reads smaps) against ~10 µs here, and it counts a ring page that
only this role has touched as private.  What RssAnon over-counts: pages inherited from the
supervisor at fork and not yet written (copy-on-write, shared in fact): a few tens of MB at
most, the supervisor's own heap, so set limits above that.

    soft limit  → RTMIN+6: the role sheds load (LOW tasks paused, caches pruned);
                  below 80 % of soft again → RTMIN+7.  These are the watchdog's own signals:
                  an operator's shed (RTMIN+3, `ctl ROLE shed`) holds until the operator's
                  unshed, whatever the memory figure, and neither lifts the other's
    hard limit  → USR1 (checkpoint), TERM; KILL after `abort_grace`; the supervisor restarts it
                  (counted as an abnormal exit, whatever the policy) and it resumes from its
                  checkpoint
    heartbeat   → a role whose loop has not turned for `heartbeat_timeout` (stuck in a long C
                  call, deadlocked) gets ABRT (faulthandler prints its Python stack), then KILL

Every action goes to the `event` callback (the supervisor's: the log and the `events`
database), and counts in the role's `watchdog_actions` shown by `syndicate status`.

The watchdog is given only what it needs: the children (role, pid, start time, control-block
slot), the control block, each role's memory limits, the event callback; and, so tests can
drive it without processes, the kill, the clocks and the /proc probe.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Iterable

from .control import F, Flag
from .signals import SIG_CHECKPOINT, SIG_MEMORY_SHED, SIG_MEMORY_UNSHED

_CLK_TCK = os.sysconf("SC_CLK_TCK")


_PAGE = os.sysconf("SC_PAGE_SIZE")


def private_memory(pid: int, fd: int | None = None) -> int | None:
    """RssAnon of `pid` in bytes, or None if it is gone: /proc/PID/statm's resident minus
    shared (shared = RssFile + RssShmem), which is what /proc/PID/status calls RssAnon, at a
    fraction of the cost of reading and parsing that file.  `fd`: statm kept open."""
    data = _read_proc(pid, "statm", fd)
    if data is None:
        return None
    fields = data.split()
    return (int(fields[1]) - int(fields[2])) * _PAGE


def cpu_ticks(pid: int, fd: int | None = None) -> int | None:
    data = _read_proc(pid, "stat", fd)
    if data is None:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def _read_proc(pid: int, name: str, fd: int | None) -> bytes | None:
    try:
        if fd is not None:
            return os.pread(fd, 4096, 0)   # a /proc file re-read at offset 0 is regenerated
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


class Watchdog:
    def __init__(self, cfg: dict, *, control, children: Callable[[], Iterable],
                 limits: Callable[[str], tuple[int, int] | None], event: Callable[..., None],
                 kill: Callable[[int, int], None] = os.kill,
                 clock: Callable[[], float] = time.monotonic,
                 clock_ns: Callable[[], int] = time.monotonic_ns,
                 probe: Callable[[int], tuple[int, int | None] | None] | None = None):
        """`children()`: the live children (each with role, pid, started, slot); `limits(role)`:
        (memory_soft, memory_hard) in bytes, None for a role on its way out; `event(kind,
        **fields)`: record an action; `probe(pid)`: (private bytes, CPU ticks) or None."""
        self.control, self.children, self.limits, self.event = control, children, limits, event
        self.kill, self.clock, self.clock_ns = kill, clock, clock_ns
        self.probe = probe or self._probe
        self.interval = cfg["interval_ms"] / 1000.0
        self.heartbeat_timeout_ns = int(cfg["heartbeat_timeout"] * 1e9)
        self.abort_grace = cfg["abort_grace"]
        self._cpu: dict[int, tuple[float, int]] = {}
        self._kill_at: dict[int, float] = {}      # pid -> when to SIGKILL
        self._fds: dict[int, tuple[int, int]] = {}  # pid -> (statm, stat) kept open: a pass
        # over 8 roles cost ~0.4 ms of CPU opening /proc files, most of it path lookups
        self.acted: set[int] = set()              # pids the watchdog stopped (abnormal exit)
        self.ticks = 0
        self.cost_ns_total = 0
        self.cost_ns_max = 0

    def forget(self, pid: int) -> None:
        self._cpu.pop(pid, None)
        self._kill_at.pop(pid, None)
        for fd in self._fds.pop(pid, ()):
            os.close(fd)

    def close_all(self) -> None:
        """In a forked child: these descriptors are the supervisor's business."""
        for fds in self._fds.values():
            for fd in fds:
                os.close(fd)
        self._fds.clear()

    def _proc_fds(self, pid: int) -> tuple[int, int] | tuple[None, None]:
        fds = self._fds.get(pid)
        if fds is None:
            try:
                fds = (os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC),
                       os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC))
            except (FileNotFoundError, ProcessLookupError):
                return None, None
            self._fds[pid] = fds
        return fds

    def was_acted(self, pid: int) -> bool:
        if pid in self.acted:
            self.acted.discard(pid)
            return True
        return False

    def _probe(self, pid: int) -> tuple[int, int | None] | None:
        fd_mem, fd_stat = self._proc_fds(pid)
        mem = private_memory(pid, fd_mem)
        return None if mem is None else (mem, cpu_ticks(pid, fd_stat))

    def _send(self, pid: int, sig: int) -> None:
        try:
            self.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _act(self, child, slot, what: str, **fields) -> None:
        slot.add(F.WATCHDOG_ACTIONS)
        self.event(f"watchdog_{what}", role=child.role, pid=child.pid, level="warning", **fields)

    def tick(self) -> None:
        # Cost = CPU time of this pass: wall time would also count the moments the (normal
        # priority) supervisor spends preempted by busy roles, which cost it nothing.
        t0 = time.thread_time_ns()
        now_mono, now_ns = self.clock(), self.clock_ns()
        control = self.control
        for child in list(self.children()):
            pid, limits = child.pid, self.limits(child.role)
            if limits is None:   # removed by a reload and on its way out
                continue
            soft, hard = limits
            slot = control.slot(child.slot)
            kill_at = self._kill_at.get(pid)
            if kill_at is not None:
                if now_mono >= kill_at:
                    self._act(child, slot, "kill", why="did not exit in time")
                    self._send(pid, signal.SIGKILL)
                    self._kill_at[pid] = float("inf")
                continue
            probed = self.probe(pid)
            if probed is None:
                continue
            mem, ticks = probed
            slot.set(F.MEM_PRIVATE, mem)
            prev = self._cpu.get(pid)
            if ticks is not None:
                if prev is not None and now_mono > prev[0]:
                    share = (ticks - prev[1]) / _CLK_TCK / (now_mono - prev[0])
                    slot.set(F.CPU_PERMILLE, max(0, int(share * 1000)))
                self._cpu[pid] = (now_mono, ticks)
            if mem > hard:
                self._act(child, slot, "memory_hard", private_bytes=mem, limit=hard,
                          action="checkpoint, stop, restart")
                self._send(pid, SIG_CHECKPOINT)
                self._send(pid, signal.SIGTERM)
                self.acted.add(pid)
                self._kill_at[pid] = now_mono + self.abort_grace
                continue
            # only the watchdog's own shed is the watchdog's to lift (not the operator's)
            shed_by_me = bool(slot.get(F.FLAGS) & Flag.SHED_BY_MEMORY)
            if mem > soft and not shed_by_me:
                self._act(child, slot, "memory_soft", private_bytes=mem, limit=soft,
                          action="shed load")
                self._send(pid, SIG_MEMORY_SHED)
            elif shed_by_me and mem < soft * 0.8:
                self._send(pid, SIG_MEMORY_UNSHED)
            hb = slot.get(F.HEARTBEAT_NS)
            alive_ns = int((now_mono - child.started) * 1e9)
            if (hb and alive_ns > self.heartbeat_timeout_ns
                    and now_ns - hb > self.heartbeat_timeout_ns):
                self._act(child, slot, "stalled", silent_s=round((now_ns - hb) / 1e9, 2),
                          action="SIGABRT, then SIGKILL")
                self._send(pid, signal.SIGABRT)
                self.acted.add(pid)
                self._kill_at[pid] = now_mono + self.abort_grace
        cost = time.thread_time_ns() - t0
        self.ticks += 1
        self.cost_ns_total += cost
        self.cost_ns_max = max(self.cost_ns_max, cost)
        control.set_watchdog_cost(self.cost_ns_total // self.ticks, self.cost_ns_max)

    def statistics(self) -> dict:
        return {"ticks": self.ticks, "interval_ms": self.interval * 1000,
                "mean_cost_us": (self.cost_ns_total / self.ticks / 1000) if self.ticks else None,
                "max_cost_us": self.cost_ns_max / 1000}

