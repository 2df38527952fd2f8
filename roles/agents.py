"""The guide's agent roles: spotters, analysts, the executor and the coordinator.

Until the arbitrage brain is wired into the switch (engine/arb, a later issue), `handle` is a
placeholder analysis: it reads each event and writes an assessment record to the role's outbox
(`out.<role>`), which the executor reads.  It is labelled as such in every record
(`"analysis": "placeholder"`), so nobody mistakes it for a trading decision.

Background tasks (roles/tasks.py): `checksum` (CPU-bound, verifiable) always; `gas-sampler`
(I/O) when the role's options name an RPC endpoint (`options.rpc = "http://…"`).
"""
from __future__ import annotations

from engine.core.role import RoleKind

from .tasks import ChecksumTask, GasSampler


class Agent(RoleKind):
    """A spotter, analyst or chain specialist: watches its chains' event rings."""

    def tasks(self):
        ts = [ChecksumTask(options=self.options.get("checksum", {}))]
        if self.options.get("rpc"):
            ts.append(GasSampler(options={"rpc": self.options["rpc"]}))
        return ts

    def handle(self, events):
        threshold = float(self.options.get("impact_threshold_bps", 50))
        out = []
        for ev in events:
            if not ev["ring"].startswith("events."):
                continue
            impact = float(ev.get("impact_bps") or 0)
            out.append({"kind": "assessment", "analysis": "placeholder", "role": self.name,
                        "chain": ev.get("chain"), "pool": ev.get("pool"),
                        "event": ev.get("id"), "impact_bps": impact,
                        "verdict": "candidate" if abs(impact) >= threshold else "ignore",
                        "t_event": ev.get("t_written"),
                        "t_origin": ev.get("t_origin", ev.get("t_written"))})
        return out


class Executor(Agent):
    """Takes assessments from the other roles' outboxes.  Paper mode: records, never sends."""

    def handle(self, events):
        out = []
        for ev in events:
            if ev.get("kind") == "assessment" and ev.get("verdict") == "candidate":
                out.append({"kind": "execution", "mode": "paper", "action": "let go",
                            "why": "placeholder analysis: no priced route yet",
                            "source": ev.get("role"), "event": ev.get("event"),
                            "t_event": ev.get("t_written"), "t_origin": ev.get("t_origin")})
        return out


class Coordinator(Agent):
    """Reads every outbox in the background (inbox = "poll"): team-level learning comes later."""
