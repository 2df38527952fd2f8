"""What a role does on each operator signal: the `handle_<name>` methods that the signal table
(engine/core/signals.py, ROLE_SIGNALS) dispatches to.  The handlers themselves only queue the
signal; the role's loop calls `_do_ops` between two slices, so these run at a safe point.
Mixed into RoleRuntime (engine/core/role.py), whose slot, task manager, log, background
scheduling and checkpoint() they use.
"""
from __future__ import annotations

from .control import F, Flag, State
from .signals import EXIT_RESTART, ROLE_SIGNALS


class Stop(Exception):
    """Leave the role's loop: checkpoint, then exit with `code`."""

    def __init__(self, code: int, reason: str):
        self.code, self.reason = code, reason


class OperatorHandlers:
    def _do_ops(self) -> None:
        while self.ops:
            ROLE_SIGNALS.dispatch(self, self.ops.popleft())

    def handle_term(self) -> None:
        raise Stop(0, "SIGTERM")

    def handle_restart(self) -> None:
        raise Stop(EXIT_RESTART, "restart requested")

    def handle_checkpoint(self) -> None:
        ok = self.checkpoint("requested")
        self.log.info("checkpoint", why="requested", ok=ok)

    def handle_pause(self) -> None:
        self.tm.pause()
        self.slot.set(F.FLAGS, self.slot.get(F.FLAGS) | Flag.PAUSED)
        self.slot.set_state(State.PAUSED)
        self.log.info("background work paused")

    def handle_resume(self) -> None:
        self.tm.resume()
        self.slot.set(F.FLAGS, self.slot.get(F.FLAGS) & ~Flag.PAUSED)
        self.slot.set_state(State.BACKGROUND)
        self.log.info("background work resumed")

    def handle_shed(self) -> None:
        self._shed_for(Flag.SHED_BY_OPERATOR, True)

    def handle_unshed(self) -> None:
        self._shed_for(Flag.SHED_BY_OPERATOR, False)

    def handle_memory_shed(self) -> None:
        self._shed_for(Flag.SHED_BY_MEMORY, True)

    def handle_memory_unshed(self) -> None:
        self._shed_for(Flag.SHED_BY_MEMORY, False)

    def _shed_for(self, why: Flag, on: bool) -> None:
        """The operator and the watchdog each hold their own shed; the role sheds while either
        does, so neither lifts the other's."""
        flags = self.slot.get(F.FLAGS)
        flags = flags | why if on else flags & ~why
        want = bool(flags & (Flag.SHED_BY_OPERATOR | Flag.SHED_BY_MEMORY))
        self.slot.set(F.FLAGS, flags | Flag.SHEDDING if want else flags & ~Flag.SHEDDING)
        if want == self.tm.shedding:
            return
        self.tm.shed(want)
        by = "operator" if why == Flag.SHED_BY_OPERATOR else "memory"
        if want:
            self.slot.add(F.SHED)
            self.log.warning("shedding load: LOW tasks paused, caches pruned", by=by)
        else:
            self.log.info("load shedding over", by=by)

    def handle_xcpu(self) -> None:
        self.bg.lower()
        self.log.warning("ran boosted too long without blocking (RLIMIT_RTTIME): lowered")
