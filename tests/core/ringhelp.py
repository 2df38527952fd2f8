"""Shared by the ring tests: a ring for one hypothesis example, and self-describing payloads."""
from __future__ import annotations

import contextlib
import os
import uuid

from engine.core.ring import Ring


@contextlib.contextmanager
def fresh_ring(**kw):
    """A ring for one hypothesis example (function fixtures are not reset between examples)."""
    name = f"/syn.t{os.getpid()}{uuid.uuid4().hex[:10]}.prop"
    ring = Ring.create(name, **kw)
    try:
        yield ring
    finally:
        ring.close()
        Ring.unlink(name)


def payload(seq: int, size: int) -> bytes:
    """Content that says which record it is: a reader can tell a wrong or torn one."""
    return (seq.to_bytes(8, "little") * (size // 8 + 1))[:size]
