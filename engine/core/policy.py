"""Restart policy after Erlang/OTP: what to do when a role exits, decided without side effects.

    permanent  always restarted
    transient  restarted only after an abnormal exit (non-zero status or killed by a signal)
    temporary  never restarted
    any role that exits with EXIT_RESTART (75) asked for a restart (`syndicate ctl ROLE restart`):
    it is restarted whatever its policy, at once, and it does not count against the intensity.

Intensity: more than `max_restarts` restarts within `restart_window` seconds means something is
wrong that restarting will not fix; the supervisor then stops everything and exits non-zero with
the reason (OTP's "reached_max_restart_intensity").  Backoff: consecutive failures of one role
wait backoff_initial · 2^(k-1), capped at backoff_max; a role that ran longer than the window
starts again from the first step.

The clock is injected so tests drive this with a fake one (the supervisor passes
time.monotonic).
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .signals import EXIT_RESTART, signame


def describe_status(status: int) -> str:
    """A waitpid status in words: 'exit 0', 'exit 3', 'killed by SIGKILL'."""
    if os.WIFSIGNALED(status):
        return f"killed by {signame(os.WTERMSIG(status))}"
    if os.WIFEXITED(status):
        return f"exit {os.WEXITSTATUS(status)}"
    return f"status {status}"


def is_normal(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def asked_restart(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_RESTART


@dataclass
class Verdict:
    restart: bool
    delay: float = 0.0
    give_up: bool = False        # intensity exceeded: stop the engine
    reason: str = ""


class RestartPolicy:
    def __init__(self, *, max_restarts: int, restart_window: float, backoff_initial: float,
                 backoff_max: float, clock: Callable[[], float]):
        self.max_restarts, self.window = max_restarts, restart_window
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.clock = clock
        self.history: deque[float] = deque()
        self.failures: dict[str, int] = {}

    def on_exit(self, role: str, policy: str, status: int, started: float,
                stopping: bool = False, stopped_by_watchdog: bool = False) -> Verdict:
        """`stopped_by_watchdog`: the watchdog asked it to stop (memory, stall), so the exit is
        abnormal whatever its status says."""
        now = self.clock()
        what = describe_status(status)
        if stopping:
            return Verdict(False, reason=f"{role} {what} during stop")
        if asked_restart(status):
            self.failures[role] = 0
            return Verdict(True, 0.0, reason=f"{role} restart requested")
        abnormal = stopped_by_watchdog or not is_normal(status)
        if stopped_by_watchdog:
            what += ", stopped by the watchdog"
        if policy == "temporary" or (policy == "transient" and not abnormal):
            return Verdict(False, reason=f"{role} {what} ({policy}: not restarted)")
        while self.history and now - self.history[0] > self.window:
            self.history.popleft()
        if len(self.history) >= self.max_restarts:
            return Verdict(False, give_up=True, reason=(
                f"restart intensity exceeded: {len(self.history) + 1} restarts within "
                f"{self.window:g} s (max_restarts = {self.max_restarts}); last: {role} {what}"))
        self.history.append(now)
        if now - started > self.window:
            self.failures[role] = 0
        k = self.failures.get(role, 0) + 1
        self.failures[role] = k
        delay = min(self.backoff_max, self.backoff_initial * (2 ** (k - 1))) if k > 1 else \
            self.backoff_initial
        return Verdict(True, delay, reason=f"{role} {what} ({policy}: restart in {delay:.2f} s)")

    def forget(self, role: str) -> None:
        self.failures.pop(role, None)

