"""Drive one background task's run to its end outside a role, waiting as it asks (`Wait` on a
file descriptor or a time), as the role's task manager would."""
from __future__ import annotations

import select
import time

from engine.core.tasks import TaskContext, Wait


class ListLog:
    """A role's log for a test: every line as (level, message, fields)."""

    def __init__(self):
        self.lines = []

    def _add(self, level, msg, **kw):
        self.lines.append((level, msg, kw))

    def info(self, msg, **kw):
        self._add("info", msg, **kw)

    def warning(self, msg, **kw):
        self._add("warning", msg, **kw)

    error = warning


def drive(task, gen=None, *, role: str = "test", timeout: float = 30.0, on_step=None) -> list[dict]:
    """Run `task` (or its generator `gen`) once; its discoveries.  `on_step(task, gen)` is
    called after every step and may return True to close the run there."""
    found: list[dict] = []
    gen = gen or task.run(TaskContext(role, discover=lambda name, rec: found.append(rec)))
    deadline = time.monotonic() + timeout
    for w in gen:
        assert time.monotonic() < deadline, f"{task.name} did not finish"
        if on_step is not None and on_step(task, gen):
            gen.close()
            break
        if isinstance(w, Wait):
            left = max(0.0, (w.until or deadline) - time.monotonic())
            if w.fd is not None:
                select.select([] if w.write else [w.fd], [w.fd] if w.write else [], [], left)
            else:
                time.sleep(min(left, 0.05))
    return found
