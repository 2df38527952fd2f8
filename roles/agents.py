"""The guide's agent roles: spotters, analysts, the executor and the coordinator.

Until the arbitrage brain is wired into the switch (engine/arb, a later issue), `handle` is a
placeholder analysis: it reads each event and writes an assessment record to the role's outbox
(`out.<role>`), which the executor reads.  It is labelled as such in every record
(`"analysis": "placeholder"`), so nobody mistakes it for a trading decision.

Background tasks (roles/tasks.py): `checksum` (CPU-bound, verifiable) always; `gas-sampler`
(I/O) when the role has an RPC endpoint: `options.rpc = "http://…"`, or its first chain's
`rpc_url` in the devnet manifest named by `[chains] manifest`.
"""
from __future__ import annotations

from engine.chain import records
from engine.core.role import RoleKind

from .tasks import ChecksumTask, GasSampler


class Agent(RoleKind):
    """A spotter, analyst or chain specialist: watches its chains' event rings."""

    OPTIONS = {"rpc": (str, None, "JSON-RPC endpoint for the gas-sampler (default: the devnet "
                                  "manifest's rpc_url of the role's first chain it serves)"),
               "impact_threshold_bps": (float, 50.0, "an event moving a price this much is a "
                                                     "candidate")}
    TASKS = {"checksum": ChecksumTask, "gas-sampler": GasSampler}
    decoders = records.DECODERS   # pool updates in their binary layout, beside JSON events

    def tasks(self):
        ts = [ChecksumTask()]
        rpc = self.options["rpc"] or self._manifest_rpc()
        if rpc:
            ts.append(GasSampler(options={"rpc": rpc}))
        return ts

    def _manifest_rpc(self) -> str | None:
        """The first of the role's chains that the [chains] manifest serves."""
        cfg = getattr(self.rt, "cfg", None)
        chains = ((cfg.manifest or {}).get("chains") or {}) if cfg is not None else {}
        for c in self.config.chains:
            if c in chains:
                return chains[c]["rpc_url"]
        return None

    def handle(self, events):
        threshold = float(self.options["impact_threshold_bps"])
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
    """Takes assessments from the other roles' outboxes.  Paper mode: records, never sends.

    Delivery is at-least-once (a role killed after publishing, before committing its ring
    cursor, publishes again after its restart), so the executor acts on each (role, event) once:
    it remembers the last `dedup_window` it has seen."""

    OPTIONS = {**Agent.OPTIONS,
               "dedup_window": (int, 100_000, "(role, event) pairs remembered to act once")}

    def __init__(self, rt):
        super().__init__(rt)
        self._seen: dict[tuple, None] = {}
        self._window = int(self.options["dedup_window"])

    def _first_time(self, key: tuple) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._window:
            del self._seen[next(iter(self._seen))]
        return True

    def handle(self, events):
        out = []
        for ev in events:
            if ev.get("kind") == "assessment" and ev.get("verdict") == "candidate" and \
                    self._first_time((ev.get("role"), ev.get("event"))):
                out.append({"kind": "execution", "mode": "paper", "action": "let go",
                            "why": "placeholder analysis: no priced route yet",
                            "source": ev.get("role"), "event": ev.get("event"),
                            "t_event": ev.get("t_written"), "t_origin": ev.get("t_origin")})
        return out


class Coordinator(Agent):
    """Reads every outbox in the background (inbox = "poll"): team-level learning comes later."""
