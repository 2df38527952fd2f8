"""Signals: the operator's interface, and the opportunity interrupt with its scheduling boost.

Why plain signal handlers (and not signalfd or a self-pipe read by a thread): the interrupt must
reach a role that is *busy* in Python code.  CPython runs a handler between two bytecodes of the
main thread, 10-16 µs after delivery here (ARCHITECTURE.md), without the GIL hand-off a helper
thread would pay (the 5 ms switch interval).  Handlers only record; the role loop acts.

Why the boost: with six busy roles on two cores the kernel, not the signal, decides when the
receiver runs (p99 7.5 ms measured here).  So whoever interrupts a role first raises it to
SCHED_FIFO (`role_rt_priority`), then signals it; the boosted role preempts background work at
once, handles the event, and lowers itself again.  The sender itself runs at a *higher* FIFO
priority (`monitor_rt_priority`): measured here, boosting a busy process from a normal-priority
sender starves the sender (its next syscall returned 50 ms later, p50), while a FIFO-20 sender
boosting FIFO-10 roles got the signal handled in 24-34 µs p50, 49-70 µs p99 with five busy roles
on two cores.  A source (which sleeps between events) runs under RLIMIT_RTTIME; a role stuck while boosted
stops its heartbeat and the watchdog aborts it; RT throttling (95 %) keeps the machine usable.  Without permission for SCHED_FIFO (not root, no RLIMIT_RTPRIO),
the boost is off and `syndicate status` says so.

One table, `SIGNALS` below, says for each process which signal does what: it installs the
handlers of both processes (`SignalTable.install`), dispatches by name (`handle_<name>` on the
supervisor or the role runtime, as gunicorn's arbiter does), derives `FORK_BLOCKED`, and
README.md's "Signals" table is checked against it (tests/core/test_signals.py).
"""
from __future__ import annotations

import ctypes
import faulthandler
import os
import resource
import signal
from dataclasses import dataclass

SIG_INTERRUPT = signal.SIGRTMIN
SIG_PAUSE = signal.SIGRTMIN + 1
SIG_RESUME = signal.SIGRTMIN + 2
SIG_SHED = signal.SIGRTMIN + 3
SIG_UNSHED = signal.SIGRTMIN + 4
SIG_RESTART = signal.SIGRTMIN + 5
SIG_MEMORY_SHED = signal.SIGRTMIN + 6     # the watchdog's, apart from the operator's shed: each
SIG_MEMORY_UNSHED = signal.SIGRTMIN + 7   # lifts only its own (issue 9, defect 3.5)
SIG_CHECKPOINT = signal.SIGUSR1

ROLE_ACTIONS = {
    "pause": SIG_PAUSE,
    "resume": SIG_RESUME,
    "checkpoint": SIG_CHECKPOINT,
    "restart": SIG_RESTART,
    "shed": SIG_SHED,
    "unshed": SIG_UNSHED,
    "stop": signal.SIGTERM,
}
EXIT_RESTART = 75   # EX_TEMPFAIL: "restart me", whatever the restart policy says

# How a signal is taken:
QUEUE = "queue"          # the handler only records the number; the loop calls handle_<name>
RECORD = "record"        # a handler of the process's own that records more (the interrupt's time)
IGNORE = "ignore"
DEFAULT = "default"      # the default action (a role does not reload, report or reap)
FAULT = "faulthandler"   # faulthandler prints the Python stack, then the default action


@dataclass(frozen=True)
class Sig:
    signum: int
    name: str            # handled by handle_<name> (QUEUE) or on_<name> (RECORD)
    doc: str             # one line: what it does
    how: str = QUEUE
    documented: bool = True   # in README.md's "Signals" table (operators send it)


class SignalTable:
    """The signals one process takes, and how."""

    def __init__(self, process: str, entries: tuple[Sig, ...]):
        self.process, self.entries = process, entries
        self.by_signum = {s.signum: s for s in entries}
        if len(self.by_signum) != len(entries):
            raise ValueError(f"{process}: a signal is listed twice")

    def handled(self) -> set[int]:
        return {s.signum for s in self.entries if s.how in (QUEUE, RECORD)}

    def install(self, target, record) -> None:
        """Set every handler: QUEUE signals go to `record(signum, frame)`, RECORD ones to
        `target.on_<name>`."""
        for s in self.entries:
            if s.how == QUEUE:
                signal.signal(s.signum, record)
            elif s.how == RECORD:
                signal.signal(s.signum, getattr(target, f"on_{s.name}"))
            elif s.how == IGNORE:
                signal.signal(s.signum, signal.SIG_IGN)
            elif s.how == DEFAULT:
                signal.signal(s.signum, signal.SIG_DFL)
            elif s.how == FAULT:
                faulthandler.enable()

    def dispatch(self, target, signum: int) -> None:
        """Act on a recorded signal: `target.handle_<name>()`."""
        getattr(target, f"handle_{self.by_signum[signum].name}")()


SUPERVISOR_SIGNALS = SignalTable("supervisor", (
    Sig(signal.SIGTERM, "term", "graceful stop: every role checkpoints and exits; KILL after grace"),
    Sig(signal.SIGINT, "int", "graceful stop, as TERM; a second INT kills every role at once"),
    Sig(signal.SIGHUP, "hup", "reload engine.toml; restart only the roles whose config changed"),
    Sig(signal.SIGUSR1, "checkpoint", "every role checkpoints now"),
    Sig(signal.SIGUSR2, "status", "write status.json to the run directory"),
    Sig(signal.SIGCHLD, "chld", "a role exited (reaped every turn of the loop)", documented=False),
))
ROLE_SIGNALS = SignalTable("role", (
    Sig(SIG_INTERRUPT, "interrupt", "opportunity interrupt: events are waiting in its rings",
        how=RECORD),
    Sig(SIG_PAUSE, "pause", "pause background work (interrupts are still handled)"),
    Sig(SIG_RESUME, "resume", "resume background work"),
    Sig(SIG_SHED, "shed", "the operator's shed: LOW tasks pause, caches are pruned, until unshed"),
    Sig(SIG_UNSHED, "unshed", "lift the operator's shed"),
    Sig(SIG_MEMORY_SHED, "memory_shed", "the watchdog's shed (soft memory limit)"),
    Sig(SIG_MEMORY_UNSHED, "memory_unshed", "lift the watchdog's shed (memory back under 80 %)"),
    Sig(SIG_RESTART, "restart", "checkpoint, exit 75: the supervisor starts it again"),
    Sig(SIG_CHECKPOINT, "checkpoint", "checkpoint now"),
    Sig(signal.SIGTERM, "term", "checkpoint and exit"),
    Sig(signal.SIGINT, "int", "ignored (Ctrl-C belongs to the supervisor)", how=IGNORE),
    Sig(signal.SIGABRT, "abort", "from the watchdog when stalled: Python stack, then death",
        how=FAULT),
    Sig(signal.SIGXCPU, "xcpu", "ran boosted too long without blocking (RLIMIT_RTTIME): lower",
        documented=False),
    Sig(signal.SIGHUP, "hup", "default (the supervisor's business)", how=DEFAULT,
        documented=False),
    Sig(signal.SIGUSR2, "usr2", "default (the supervisor's business)", how=DEFAULT,
        documented=False),
    Sig(signal.SIGCHLD, "chld", "default", how=DEFAULT, documented=False),
))
SIGNALS = (SUPERVISOR_SIGNALS, ROLE_SIGNALS)

# Blocked in the supervisor around fork(), so a child can never receive one of these before it
# has installed its own handlers (an RT signal's default action kills the process); the child
# unblocks them once its handlers are in place, and whatever arrived meanwhile is delivered then.
FORK_BLOCKED = SUPERVISOR_SIGNALS.handled() | ROLE_SIGNALS.handled()


def drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe (signal.set_wakeup_fd's, or a thread's "done" pipe)
    without blocking: what it held only said "look again"."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def signame(sig: int) -> str:
    if signal.SIGRTMIN <= sig <= signal.SIGRTMAX:
        off = sig - signal.SIGRTMIN
        return "SIGRTMIN" + (f"+{off}" if off else "")
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


# --------------------------------------------------------------------------------- scheduling
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Linux: deliver `sig` to this process when its parent (the forking thread) dies."""
    if _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def can_boost(priority: int) -> bool:
    """Whether this process may use SCHED_FIFO at `priority` (tried on itself, then undone)."""
    try:
        old = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        os.sched_setscheduler(0, old[0], old[1])
        return True
    except (PermissionError, OSError):
        return False


def boost(pid: int, priority: int) -> bool:
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (PermissionError, ProcessLookupError, OSError):
        return False


def set_realtime(priority: int, rttime_us: int = 200_000) -> bool:
    """Run this process at SCHED_FIFO `priority` (for event sources, which mostly sleep), with
    RLIMIT_RTTIME as a fuse: SIGXCPU after `rttime_us` of CPU without blocking."""
    try:
        resource.setrlimit(resource.RLIMIT_RTTIME, (rttime_us, rttime_us * 5))
    except (ValueError, OSError):
        pass
    return boost(0, priority)


class Background:
    """The scheduling class background work runs in, and how to return to it after a switch."""

    def __init__(self, policy: str = "nice", nice: int = 10):
        self.policy_name, self.nice = policy, nice
        if policy == "idle":
            self.policy = os.SCHED_IDLE
        elif policy == "normal":
            self.policy = os.SCHED_OTHER
        else:
            self.policy = os.SCHED_OTHER
        self.param = os.sched_param(0)

    def enter(self) -> None:
        """Called once at role start: set nice (inherited by nothing else) and the policy."""
        if self.policy_name == "nice":
            try:
                os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            except OSError:
                pass
        self.lower()
        # No RLIMIT_RTTIME here: a busy role never blocks, and the kernel keeps counting its
        # FIFO time across boosts (measured: at 1 500 events/s a role reached a 2 s hard limit
        # in 5 s and was killed).  A role stuck while boosted stops its heartbeat instead, and
        # the watchdog aborts it; RT throttling keeps 5 % of each CPU for everyone else.
        try:
            resource.setrlimit(resource.RLIMIT_RTTIME, (resource.RLIM_INFINITY,
                                                        resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass

    def lower(self) -> None:
        try:
            os.sched_setscheduler(0, self.policy, self.param)
        except OSError:
            pass

    def lower_unless(self, pending, boost_priority: int | None) -> bool:
        """Lower this process after a switch unless `pending()` (another interrupt came while it
        switched); True if it stays, or is put back, at `boost_priority`.  Looked at before
        lowering — lowered, a role under load waits milliseconds for the CPU before it can look
        again — and after: a sender stores SENT_NS, boosts, then signals, so a boost the lower
        undid shows then, and the role boosts itself back (its next switch lowers it)."""
        if boost_priority is not None and pending():
            return True
        self.lower()
        return boost_priority is not None and pending() and boost(0, boost_priority)

    @staticmethod
    def boosted() -> bool:
        return os.sched_getscheduler(0) == os.SCHED_FIFO
