"""Fakes shared by the unit tests that drive engine code without processes or real time."""
from __future__ import annotations


class Clock:
    """A monotonic clock that moves only when the test moves it.  Call it for seconds (as
    time.monotonic); `ns()` is the same instant in nanoseconds (as time.monotonic_ns)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def ns(self) -> int:
        return int(self.t * 1e9)

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t
