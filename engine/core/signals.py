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

The table (README.md keeps the same one):

    supervisor  TERM, INT  graceful stop (a second INT: stop at once)
                HUP        reload engine.toml; restart only the roles whose config changed
                USR1       checkpoint every role
                USR2       write a status report to the run directory
    role        RTMIN      opportunity interrupt (events waiting in the ring)
                RTMIN+1    pause background work        RTMIN+2  resume it
                RTMIN+3    shed load (soft memory limit) RTMIN+4  stop shedding
                RTMIN+5    restart: checkpoint, exit, and the supervisor starts it again
                USR1       checkpoint now
                TERM       checkpoint and exit
                INT        ignored (Ctrl-C belongs to the supervisor)
                ABRT       from the watchdog when stalled: dump the Python stack and die
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal

SIG_INTERRUPT = signal.SIGRTMIN
SIG_PAUSE = signal.SIGRTMIN + 1
SIG_RESUME = signal.SIGRTMIN + 2
SIG_SHED = signal.SIGRTMIN + 3
SIG_UNSHED = signal.SIGRTMIN + 4
SIG_RESTART = signal.SIGRTMIN + 5
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
EXIT_RESTART = 75
# Blocked in the supervisor around fork(), so a child can never receive one of these before it
# has installed its own handlers (an RT signal's default action kills the process); the child
# unblocks them once its handlers are in place, and whatever arrived meanwhile is delivered then.
FORK_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGCHLD, SIG_INTERRUPT, SIG_PAUSE, SIG_RESUME, SIG_SHED, SIG_UNSHED,
                SIG_RESTART}  # EX_TEMPFAIL: "restart me", whatever the restart policy says


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

    @staticmethod
    def boosted() -> bool:
        return os.sched_getscheduler(0) == os.SCHED_FIFO
