"""The guide's agent roles: spotters, analysts and the coordinator (the executor is
roles/executor.py; `roles.agents:Executor` still names it).

Until the arbitrage brain is wired into the switch (engine/arb, a later issue), `handle` is a
placeholder analysis: it reads each event and writes an assessment record to the role's outbox
(`out.<role>`), which the executor reads.  It is labelled as such in every record
(`"analysis": "placeholder"`), so nobody mistakes it for a trading decision.

Each agent keeps a replica of its chains' pool graphs (engine/chain/replica.py): at start it
loads the chain monitor's snapshot (run_dir/graph.<chain>.snap, see roles/monitor.py), then
applies every pool record it reads from `events.<chain>`.  A snapshot that does not reach the
ring position the role starts reading at would leave a gap, so the replica is not used until a
snapshot that covers it is there (the monitor rewrites it within a second of any change); the
same after the role fell a lap behind.  Records are whole states, so the overlap between a
snapshot and the ring is harmless.

Background tasks (roles/tasks.py): `checksum` (CPU-bound, verifiable) always; `gas-sampler`
(I/O) when the role has an RPC endpoint: `options.rpc = "http://…"`, or its first chain's
`rpc_url` in the devnet manifest named by `[chains] manifest`.
"""
from __future__ import annotations

import orjson

from engine.chain import records
from engine.core.role import RoleKind

from .executor import Executor  # noqa: F401  (moved to roles/executor.py; the old path stays)
from .tasks import ChecksumTask, GasSampler


class Replicas:
    """The role's pool graph per chain, from the monitor's snapshot and the ring."""

    def __init__(self, rt, chains):
        self.rt, self.chains = rt, list(chains)
        self.graphs: dict = {c: None for c in self.chains}
        self.need: dict[str, int] = {}       # chain -> ring sequence the snapshot must reach
        self.applied = self.unknown = self.bad = 0

    def start(self) -> None:
        for ring_name, reader in getattr(self.rt, "readers", []):
            if ring_name.startswith("events."):
                self.need[ring_name[7:]] = reader.cursor
        for c in self.chains:
            self.load(c)

    def load(self, chain: str) -> bool:
        from engine.chain.replica import load_graph
        path = self.rt.cfg.run_dir / f"graph.{chain}.snap"
        try:
            raw = path.read_bytes()
            head, _, body = raw.partition(b"\n")
            meta = orjson.loads(head)
            if int(meta.get("published", -1)) < self.need.get(chain, 0):
                return False          # older than where this role reads the ring: a gap
            self.graphs[chain] = load_graph(body)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, orjson.JSONDecodeError) as e:
            self.bad += 1
            self.rt.log.warning("cannot load the pool graph snapshot", path=str(path), error=str(e))
            return False
        self.rt.log.info("pool graph loaded", chain=chain, pools=len(self.graphs[chain]),
                         covers=meta.get("published"))
        return True

    def apply(self, ev: dict):
        """Apply one pool record; the pool's new state, or None (replica not ready, unknown)."""
        from engine.chain.replica import apply_record
        chain = ev.get("chain")
        if chain not in self.graphs:
            return None
        if self.graphs[chain] is None and not self.load(chain):
            return None
        try:
            pool = apply_record(self.graphs[chain], ev)
        except ValueError as e:
            self.bad += 1
            self.rt.log.warning("malformed pool record", error=str(e)[:200])
            return None
        if pool is None:
            self.unknown += 1
        else:
            self.applied += 1
        return pool

    def info(self) -> dict:
        chains = {c: (len(g) if g is not None else None) for c, g in self.graphs.items()}
        text = ", ".join(f"{c} {n} pools" if n is not None else f"{c} waiting for a snapshot"
                         for c, n in chains.items())
        return {"summary": f"replicas: {text}; {self.applied} records applied"
                           + (f", {self.unknown} for unknown pools" if self.unknown else "")
                           + (f", {self.bad} bad" if self.bad else ""),
                "replicas": chains, "applied": self.applied, "unknown": self.unknown,
                "bad": self.bad}

    def lost(self, ring: str) -> None:
        chain = ring[7:] if ring.startswith("events.") else None
        if chain in self.graphs:      # records were skipped: only a newer snapshot is whole
            self.graphs[chain] = None
            reader = dict(getattr(self.rt, "readers", [])).get(ring)
            self.need[chain] = reader.cursor if reader is not None else 0


class Agent(RoleKind):
    """A spotter, analyst or chain specialist: watches its chains' event rings."""

    OPTIONS = {"rpc": (str, None, "JSON-RPC endpoint for the gas-sampler (default: the devnet "
                                  "manifest's rpc_url of the role's first chain it serves)"),
               "impact_threshold_bps": (float, 50.0, "an event moving a price this much is a "
                                                     "candidate")}
    TASKS = {"checksum": ChecksumTask, "gas-sampler": GasSampler}
    decoders = records.DECODERS   # pool updates in their binary layout, beside JSON events

    def __init__(self, rt):
        super().__init__(rt)
        self.replicas = Replicas(rt, getattr(self.config, "chains", ()))

    def on_start(self) -> None:
        self.replicas.start()

    def on_lost(self, ring: str, n: int) -> None:
        super().on_lost(ring, n)
        self.replicas.lost(ring)

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
        pools_seen = False
        for ev in events:
            if not ev["ring"].startswith("events."):
                continue
            if ev.get("type") == "pool":
                out += self._pool_event(ev)
                pools_seen = True
                continue
            impact = float(ev.get("impact_bps") or 0)
            out.append({"kind": "assessment", "analysis": "placeholder", "role": self.name,
                        "chain": ev.get("chain"), "pool": ev.get("pool"),
                        "event": ev.get("id"), "impact_bps": impact,
                        "verdict": "candidate" if abs(impact) >= threshold else "ignore",
                        "t_event": ev.get("t_written"),
                        "t_origin": ev.get("t_origin", ev.get("t_written"))})
        if pools_seen and hasattr(self.rt, "set_info"):
            self.rt.set_info(self.replicas.info())
        return out

    def _pool_event(self, ev: dict) -> list[dict]:
        """A chain monitor's record: the replica takes every one; only interrupting ones get
        the (placeholder) assessment."""
        self.replicas.apply(ev)
        if not ev.get("interrupt") or ev.get("reverted"):
            return []
        ident = f"{ev.get('chain')}:{ev.get('block_hash')}:{ev.get('tx')}:{ev.get('log_index')}"
        return [{"kind": "assessment", "analysis": "placeholder", "role": self.name,
                 "chain": ev.get("chain"), "pool": ev.get("pool"), "event": ident,
                 "block": ev.get("block"), "impact_bps": ev.get("impact_bps"),
                 "replica": self.replicas.graphs.get(ev.get("chain")) is not None,
                 "verdict": "candidate", "t_event": ev.get("t_written"),
                 "t_origin": ev.get("t_origin")}]


class Coordinator(Agent):
    """Reads every outbox in the background (inbox = "poll"): team-level learning comes later."""
