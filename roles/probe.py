"""Diagnostic roles for tests and benchmarks.

`ChecksumProbe`: an agent whose every decision carries its checksum task's state, to prove that
a switch never corrupts or loses background state: each decision says how far the hash chain
had got (`n`, `digest`) when the event preempted it, and anyone can recompute the chain
(roles/tasks.py: ChecksumTask.expected).

`PoolRecordSource`: a source of binary pool-update records (engine/chain/records.py), some of
them published without an interrupt, to prove the binary path end to end.

`ActionFeed`: publishes the JSON records a test drops into its `spool` directory (one file
each, `*.json`, taken in name order and renamed `*.json.sent`) into its outbox, as an agent
publishes its decisions: the executor reads and is interrupted by them.
"""
from __future__ import annotations

import os
import time

import orjson

from engine.chain import records
from engine.config import CHAINS
from engine.core.role import RoleKind
from engine.core.tasks import Priority, Task, Wait

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


class PoolRecordSource(RoleKind):
    """Publishes `count` pool-update records in their binary layout (engine/chain/records.py)
    at `rate` per second: every `quiet`-th one does not interrupt (it is published without a
    signal, as the chain monitor publishes updates under the threshold)."""
    OPTIONS = {"rate": (float, 20.0, "records per second per chain"),
               "count": (int, 10, "records to publish, then stay quiet"),
               "quiet": (int, 3, "every quiet-th record is published without a signal")}
    source = True
    realtime = True

    def tasks(self):
        return [_PoolEmit(self, f"events.{c}", c) for c in self.config.chains]


class _PoolEmit(Task):
    name = "pool-emit"
    priority = Priority.CRITICAL
    interval = 0.0

    def __init__(self, source, ring: str, chain: str):
        super().__init__(name=f"pool-emit-{chain}")
        self.source, self.ring, self.chain = source, ring, chain

    def initial_state(self):
        return {"published": 0}

    def run(self, ctx):
        o = self.source.options
        period, count, quiet = 1.0 / float(o["rate"]), int(o["count"]), int(o["quiet"])
        nxt = time.monotonic()
        st = self.state
        while st["published"] < count:
            nxt = max(nxt + period, time.monotonic())
            yield Wait(until=nxt)
            i = st["published"]
            rec = pool_record(self.chain, i, interrupt=(i + 1) % quiet != 0)
            self.source.rt.publish_encoded(self.ring, [records.encode(rec)],
                                           notify=rec["interrupt"])
            st["published"] += 1
        while True:
            yield Wait(until=time.monotonic() + 3600)


def pool_record(chain: str, i: int, *, interrupt: bool) -> dict:
    """The i-th synthetic v2 sync record of the shared contract (/work/notes/records.md)."""
    return {"type": "pool", "chain": chain, "block": 1000 + i,
            "block_hash": "0x" + (i + 1).to_bytes(32, "big").hex(),
            "tx": "0x" + (i + 7).to_bytes(32, "big").hex(), "log_index": i % 4,
            "pool": "0x" + (0xabc0 + i % 3).to_bytes(20, "big").hex(), "kind": "v2",
            "event": "sync", "state": {"reserve0": str(10**21 + i), "reserve1": str(3 * 10**9)},
            "impact_bps": 60 + i, "interrupt": interrupt, "reverted": False,
            "t_origin": time.monotonic_ns()}


PoolRecordSource.TASKS = {f"pool-emit-{c}": _PoolEmit for c in CHAINS}


class ActionFeed(RoleKind):
    OPTIONS = {"spool": (str, "", "directory of *.json records to publish (test-only)")}

    def tasks(self):
        return [_Feed(self)]


class _Feed(Task):
    name = "feed"
    priority = Priority.HIGH
    interval = 0.05

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def run(self, ctx):
        spool = self.kind.options["spool"]
        names = sorted(n for n in os.listdir(spool) if n.endswith(".json")) if spool else []
        for n in names:
            path = os.path.join(spool, n)
            rec = orjson.loads(open(path, "rb").read())
            if self.kind.rt.outbox is not None:
                self.kind.rt._publish_decisions([rec])
            os.replace(path, path + ".sent")
            yield None
