"""The replay source: recorded logs into `events.<chain>` through the chain monitor's own path.

`syndicate replay` (engine/replay/cli.py) runs a real engine whose `replay-<chain>` roles are
this kind in place of the `monitor-<chain>` ChainMonitors.  Per chain it builds the same
PoolBook, seeds it with the pools the input revealed (engine/replay/inputs.py), and applies
every log with `PoolBook.apply` (the one decoder; the 0.5 % trigger is the book's
`threshold_bps`, the chain's `[chains.<chain>] threshold_bps`).  Records are published with
the ChainMonitor's own `publish` and graph snapshot code (`_ChainFeed.publish`,
`_ChainFeed.write_snapshot`: the same functions, called on this feed), so the agents load
the snapshot, follow the ring and are interrupted exactly as by a live monitor.

Pacing (`speed`): 0 = "max": after each record that interrupts, the source waits until every
role it interrupts has read it (their ring cursors move only once their decisions are out), so
each swap meets the same replica whatever the machine's load; and once the ring's readers are
half a lap behind, it waits for them.  1.0 / 10.0: the logs' own timestamps, 1x or 10x (logs
without a timestamp go at once).  At the end it waits until the agents' outboxes are read too
(the executor's paper outcome), then says `done` in its status info.

Options: `input` (the prepared file: a header line {"chain", "pools": [seeds]}, then one log a
line), `speed`, `crossed` (a file receiving one line per interrupting record: the CLI's list of
swaps that crossed the threshold).
"""
from __future__ import annotations

import time

import orjson

from engine.config import CHAINS
from engine.core.kind import RoleKind
from engine.core.tasks import Priority, Wait

from .monitor import _ChainFeed, _Run

DRAIN_TIMEOUT_S = 30.0      # a role that does not read within this long is not waited for


class _ReplayFeed:
    """One chain of the replay: the attributes `_ChainFeed.publish` / `write_snapshot` use."""

    publish = _ChainFeed.publish
    write_snapshot = _ChainFeed.write_snapshot

    def __init__(self, mon: "ReplaySource", chain: str, settings: dict):
        from engine.chain.poolbook import PoolBook
        self.mon, self.chain, self.s = mon, chain, settings
        self.log = mon.log
        self.ring = f"events.{chain}"
        self.book = PoolBook(chain, threshold_bps=settings.get("threshold_bps", 50),
                             reorg_depth=settings.get("reorg_depth", 64))
        self.snapshot_path = mon.rt.cfg.run_dir / f"graph.{chain}.snap"
        self.dirty = False
        self.events = self.interrupts = self.reverted = self.oversize = 0
        self.max_impact = self.last_impact = 0
        self.logs = self.consumed = self.dropped = self.waited_out = 0
        self.done = False
        self.error = ""
        self.t_start = self.t_end = 0.0

    # ---- the readers
    def _cursors(self, ring_name: str) -> tuple[int, dict[int, int]]:
        w = self.mon.rt.wiring
        ring = w.rings[ring_name]
        st = ring.statistics()
        want = {w.slots[r] for r in w.subscribers.get(ring_name, [])}
        return st["published"], {r["index"]: r["cursor"] for r in st["readers"] if r["index"] in want}

    def _behind(self, ring_name: str, slack: int = 0) -> bool:
        published, cursors = self._cursors(ring_name)
        want = {self.mon.rt.wiring.slots[r] for r in self.mon.rt.wiring.subscribers.get(ring_name, [])}
        return any(cursors.get(i, 0) + slack < published for i in want)

    def _lapping(self, slots: int) -> bool:
        st = self.mon.rt.wiring.rings[self.ring].statistics()
        return any(r["lag"] >= slots // 2 for r in st["readers"])

    def drain(self, ring_name: str, slack: int = 0):
        """Wait (parked, 1 ms steps) until the ring's interrupted readers are within `slack`."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._behind(ring_name, slack):
            if time.monotonic() > deadline:
                self.waited_out += 1
                self.log.warning("a reader did not catch up: not waiting for it", ring=ring_name)
                return
            yield Wait(until=time.monotonic() + 0.001)

    # ---- the replay
    def run(self):
        """The whole input, once: a failure ends the replay with its reason in the status
        (`error`), never a re-run that would publish the logs twice."""
        if self.done:
            return
        try:
            yield from self._run()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"[:500]
            self.log.error("the replay failed", chain=self.chain, error=self.error)
            self.done = True
            self.mon.report(force=True)
        while True:
            yield Wait(until=time.monotonic() + 3600)

    def _run(self):
        from engine.chain.replica import pool_from
        with open(self.mon.options["input"], "rb") as f:
            header = orjson.loads(f.readline())
            lines = f.readlines()
        for s in header["pools"]:
            gross = {int(t): int(g) for t, g in (s.get("gross") or {}).items()} or None
            self.book.seed(pool_from(s["address"], s, s["state"], s.get("ticks") or ()),
                           int(s["block"]), int(s["log_index"]), gross)
        self.write_snapshot()           # covers ring position 0: the roles start from it
        self.logs = len(lines)
        w = self.mon.rt.wiring
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:      # every role it interrupts attached to the ring
            st = w.rings[self.ring].statistics()
            pids = {r["index"]: r["pid"] for r in st["readers"]}
            if all(pids.get(w.slots[r]) for r in w.subscribers.get(self.ring, [])):
                break
            yield Wait(until=time.monotonic() + 0.05)
        speed = float(self.mon.options["speed"])
        slots = w.rings[self.ring].capacity
        crossed = open(self.mon.options["crossed"], "ab") if self.mon.options["crossed"] else None
        self.t_start = time.monotonic()
        t0 = None
        since = 0           # records since the roles were last interrupted
        try:
            for n, line in enumerate(lines):
                log = orjson.loads(line)
                ts = log.pop("t", None)
                if speed > 0 and ts is not None:
                    t0 = ts if t0 is None else t0
                    due = self.t_start + (ts - t0) / speed
                    if due > time.monotonic():
                        yield Wait(until=due)
                self.consumed += 1
                rec = self.book.apply(log, time.monotonic_ns())
                if rec is None or rec.get("type") != "pool":   # a duplicate, or no change; a
                    self.dropped += 1          # factory's new pool cannot be read: no node
                    continue
                self.publish([rec])
                since += 1
                if rec["interrupt"]:
                    since = 0
                    if crossed is not None:
                        crossed.write(orjson.dumps({k: rec[k] for k in (
                            "chain", "block", "block_hash", "tx", "log_index", "pool", "kind",
                            "event", "impact_bps", "state")}) + b"\n")
                    if self._lapping(slots):
                        self.write_snapshot()     # a reader a lap behind reloads from it
                    if speed == 0:
                        yield from self.drain(self.ring)
                elif since >= slots // 4:
                    # a quiet stretch: the roles read these only at their next switch, and a
                    # lap later they would have lost them; a live chain paces this, a replay
                    # at max speed does not, so the replay wakes them to read (no decision:
                    # nothing crossed) and waits for them
                    since = 0
                    interrupter = self.mon.rt.publishers[self.ring].interrupter
                    if interrupter is not None:
                        interrupter.notify()
                    yield from self.drain(self.ring)
                elif n % 64 == 0:
                    yield None
        finally:
            if crossed is not None:
                crossed.close()
        if since:       # the last quiet stretch: wake the roles to read it (see above)
            interrupter = self.mon.rt.publishers[self.ring].interrupter
            if interrupter is not None:
                interrupter.notify()
        yield from self.drain(self.ring)
        # the agents' decisions reach the executor: wait until their outboxes are read, and
        # stay read for a moment (the executor's own outcome records come after)
        quiet = 0
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while quiet < 3 and time.monotonic() < deadline:
            outs = [r for r in w.rings if r.startswith("out.") and r != f"out.{self.mon.name}"]
            quiet = quiet + 1 if not any(self._behind(r) for r in outs) else 0
            yield Wait(until=time.monotonic() + 0.1)
        self.t_end = time.monotonic()
        if self.dirty:
            self.write_snapshot()
        self.done = True
        self.mon.report(force=True)

    def keep(self):
        if self.dirty:
            self.write_snapshot()
        self.mon.report()
        yield from ()

    def info(self) -> dict:
        took = (self.t_end or time.monotonic()) - self.t_start if self.t_start else 0.0
        return {"summary": f"{self.chain}: replay {'done' if self.done else 'running'}: "
                           f"{self.consumed}/{self.logs} logs, {self.events} records "
                           f"({self.interrupts} >= {self.book.threshold_bps} bps)",
                "done": self.done, "error": self.error, "logs": self.logs, "consumed": self.consumed,
                "events": self.events, "interrupts": self.interrupts, "dropped": self.dropped,
                "oversize": self.oversize, "waited_out": self.waited_out,
                "max_impact_bps": self.max_impact, "seconds": took,
                "pools": len(self.book.graph), "book": self.book.statistics()}


class ReplaySource(RoleKind):
    """Recorded logs as a chain monitor would publish them (module text)."""

    OPTIONS = {"input": (str, "", "the prepared replay file (written by `syndicate replay`)"),
               "speed": (float, 0.0, "0: as fast as the roles decide; else x real time"),
               "crossed": (str, "", "a file for the records that crossed the threshold")}
    TASKS = {f"{k}-{c}": _Run for k in ("replay", "keep") for c in CHAINS}
    source = realtime = True

    def __init__(self, rt):
        super().__init__(rt)
        nets = getattr(rt.cfg, "networks", {}) or {}
        chain = self.config.chains[0]
        self.feed = _ReplayFeed(self, chain, nets.get(chain) or {})
        self._reported = 0.0

    def tasks(self):
        c = self.feed.chain
        return [_Run(f"replay-{c}", self.feed.run, Priority.CRITICAL, 1.0),
                _Run(f"keep-{c}", self.feed.keep, Priority.HIGH, 0.5)]

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported >= 0.4:
            self._reported = now
            i = self.feed.info()
            self.rt.set_info({"summary": i["summary"], "chains": {self.feed.chain: i}})
