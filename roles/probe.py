"""A diagnostic role: an agent whose every decision carries its checksum task's state.

Tests and benchmarks use it to prove that a switch never corrupts or loses background state:
each decision says how far the hash chain had got (`n`, `digest`) when the event preempted it,
and anyone can recompute the chain (roles/tasks.py: ChecksumTask.expected).
"""
from __future__ import annotations

from .agents import Agent


class ChecksumProbe(Agent):
    def handle(self, events):
        out = super().handle(events)
        entry = self.rt.tm.entries.get("checksum")
        st = dict(entry.task.state) if entry else {}
        for d in out:
            d["checksum"] = st
            d["paused"] = self.rt.tm.paused
        return out
