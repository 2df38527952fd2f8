"""Event sources: the processes that write `events.<chain>` rings and interrupt the roles.

`ChainMonitor` (the default `monitor-<chain>` roles) follows a chain's nodes over WebSocket
(engine/chain/follow.py), keeps the exact pool state (engine/chain/poolbook.py) and publishes
every pool record (the shared record contract) into `events.<chain>`: records whose impact
reaches the chain's `threshold_bps` interrupt the subscribed roles, the others are published
without a signal and read at the roles' next switch.  Its tasks, per chain:

    follow-<chain>   CRITICAL  the subscription, backfill, reorgs, failover (never ends)
    probe-<chain>    MEDIUM    eth_blockNumber on the standby endpoints every 2 s (health, lag)
    keep-<chain>     HIGH      every 0.5 s: the graph snapshot for starting roles (when it
                               changed) and the role's status line
    drift-<chain>    LOW       every `drift_interval` s: re-read a sample of pools, count drift

The snapshot is `run_dir/graph.<chain>.snap`: one JSON header line ({"chain", "published":
the ring's sequence it covers, "block", "pools"}) then engine/chain/replica.dump_graph's bytes;
written to a temporary file and renamed, so a reader never sees half of one.

`SyntheticSource` (roles/synthetic.py, also importable from here) emits swap-shaped events
at a configured rate for `syndicate bench switch` and tests.
"""
from __future__ import annotations

import gc
import os
import random
import threading
import time

import orjson

from engine.config import CHAINS
from engine.core.control import H
from engine.core.role import RoleKind
from engine.core.tasks import Priority, Task, Wait
from . import metrics
from .synthetic import SyntheticSource  # noqa: F401  (kind "roles.monitor:SyntheticSource")

DETECT = int(H.DETECT)      # a plain int: an enum member costs a lookup per observation


def _detected(rt, records: list[dict]) -> None:
    """Detection latency into the control block (`status`, syndicate_detect_seconds): a log's
    bytes received (t_origin) -> its record in the ring (t_written, stamped by the publish),
    after the records are out, so it costs the detection nothing.  A function, not a method:
    the replay source publishes through `_ChainFeed.publish` on a feed of its own."""
    slot = getattr(rt, "slot", None)
    for r in records if slot is not None else ():
        if r.get("t_origin") and r.get("t_written") and not r.get("reverted"):
            slot.observe(DETECT, r["t_written"] - r["t_origin"])


# ---------------------------------------------------------------------------------------------
class _Run(Task):
    """A task whose run is a generator made by `make()`."""

    def __init__(self, name: str, make, priority: Priority, interval: float):
        super().__init__(name=name, interval=interval, priority=priority)
        self.make = make

    def run(self, ctx):
        return self.make()


def _in_thread(fn, *args):
    """`result = yield from _in_thread(fn, ...)`: fn runs in a thread while the task is parked
    (the role's thread follows its sockets meanwhile); its exception is raised here."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:      # handed to the task, not lost in a thread
            box["error"] = e

    (t := threading.Thread(target=run, name="monitor-read", daemon=True)).start()
    while t.is_alive():
        yield Wait(until=time.monotonic() + 0.02)
    if "error" in box:
        raise box["error"]
    return box["value"]


class _ChainFeed:
    """One chain of a monitor: book, follower, prober, snapshot and status."""

    def __init__(self, mon: "ChainMonitor", chain: str, settings: dict):
        from engine.chain.follow import Follower, Prober
        from engine.chain.poolbook import PoolBook
        self.mon, self.chain, self.s = mon, chain, settings
        self.log = mon.log
        self.ring = f"events.{chain}"
        self.book = PoolBook(chain, threshold_bps=settings["threshold_bps"],
                             reorg_depth=settings["reorg_depth"], factories=settings["factories"])
        self.follower = Follower(chain, settings, self.book, publish=self.publish, log=self.log,
                                 on_start=self.load, on_created=self.created,
                                 on_resync=self.resync)
        self.prober = Prober(self.follower)
        if not self.follower.endpoints and settings["rpc"]:
            self.follower.status = "webhooks only: reading the pools over HTTP"
        self.snapshot_path = mon.rt.cfg.run_dir / f"graph.{chain}.snap"
        self.dirty = False
        self.loaded = False
        self.events = self.interrupts = self.reverted = self.oversize = 0
        self.hooks = {"records": 0, "logs": 0, "applied": 0, "dropped": 0, "orphaned": 0}
        self.max_impact = self.last_impact = 0
        self.drift = 0
        self.drift_checks = 0
        self.drift_unconfirmed = 0     # differences a second read of the same block did not show
        self.drift_last = ""
        self.load_errors: dict[str, str] = {}
        self._rpcs = None
        self._drift_rpc = None      # the drift thread's own connection

    # ---- state from the chain (HTTP JSON-RPC, pools.py)
    def rpcs(self):
        from engine.chain.rpc import RpcClient
        if self._rpcs is None:
            self._rpcs = [RpcClient(u, timeout=self.s["request_timeout"] * 4) for u in self.s["rpc"]]
        return self._rpcs

    def _specs(self):
        from engine.chain.pools import PoolSpec, specs_from_manifest
        m = ((self.mon.rt.cfg.manifest or {}).get("chains") or {}).get(self.chain)
        known = {sp.address: sp for sp in specs_from_manifest(m)} if m else {}
        return [known.get(a, PoolSpec(a)) for a in self.s["pools"]]

    def resync(self, head: int):
        """The node shares no block with us: a new book read at `head`, every pool published
        whole (as a "created" record, which a replica takes as the pool's new self)."""
        from engine.chain.poolbook import PoolBook
        self.book = self.follower.book = PoolBook(
            self.chain, threshold_bps=self.s["threshold_bps"], reorg_depth=self.s["reorg_depth"],
            factories=self.s["factories"])
        got = yield from self.load(head)
        self.publish([self.book.add_pool(p, got.block, got.gross.get(a))
                      for a, p in got.pools.items()])

    def load(self, head: int):
        """The follower's start: every watched pool read at `head` (logs after it follow)."""
        from engine.chain.pools import load_pools
        from engine.chain.rpc import RpcError
        from engine.chain.ws import WsError
        if not self.rpcs():
            raise WsError(f"{self.chain}: no HTTP rpc endpoint to read the pools' state from "
                          f"(set [chains.{self.chain}] rpc)")
        last = None
        for rpc in self.rpcs():
            try:
                got = load_pools(rpc, self._specs(), head)
                break
            except RpcError as e:
                last = e
        else:
            raise WsError(f"{self.chain}: cannot read the pools' state: {last}")
        for address, why in got.errors.items():   # e.g. an address with no code: left out
            self.log.warning("pool not loaded", chain=self.chain, pool=address, why=why[:200])
        self.load_errors = dict(got.errors)
        self.book.load(got)
        self.loaded = self.dirty = True
        self.log.info("pools loaded", chain=self.chain, block=head, pools=len(got.pools),
                      errors=len(got.errors))
        yield from ()
        return got

    def created(self, notice: dict, t_origin: int):
        for rpc in self.rpcs():
            rec = self.book.load_created(rpc, notice, t_origin)
            if rec is not None:
                self.log.info("new pool joins", chain=self.chain, pool=rec["pool"],
                              kind=rec["kind"])
                return rec
        self.log.warning("a new pool could not be read", chain=self.chain, pool=notice["pool"],
                         why=self.book.load_errors.get(notice["pool"], "no rpc endpoint"))
        return None

    # ---- the webhook hand-off (DEVELOPING.md): logs the Moralis receiver handed on
    def apply_hook(self, logs: list[dict], t_origin: int) -> None:
        """Apply logs read back from the inbox; the book's (block hash, tx, log index) dedup
        drops what the WebSocket already brought (and the other way round)."""
        self.hooks["records"] += 1
        out = []
        from engine.chain.hooks import orphaned
        for log in logs:
            self.hooks["logs"] += 1
            if orphaned(log, self.follower.hashes):    # a block the node has replaced
                self.hooks["orphaned"] += 1
                continue
            try:
                rec = self.book.apply(log, t_origin)
            except (ValueError, KeyError, TypeError, IndexError) as e:   # truncated data
                self.log.warning("bad hand-off log (ignored)", chain=self.chain,
                                 error=repr(e)[:200])
                rec = None
            if rec is not None and rec.get("type") == "created":   # a factory's new pool
                rec = self.created(rec, t_origin)
            if rec is None:
                self.hooks["dropped"] += 1   # a duplicate, or no state change (a V2 Swap)
            else:
                self.hooks["applied"] += 1
                out.append(rec)
        if out:
            self.publish(out)

    # ---- publishing
    def publish(self, records: list[dict]) -> None:
        notify = False
        for r in records:
            self.events += 1
            imp = int(r.get("impact_bps") or 0)
            self.last_impact = imp
            self.max_impact = max(self.max_impact, imp)
            if r.get("reverted"):
                self.reverted += 1
            if r.get("interrupt"):
                self.interrupts += 1
                notify = True
        try:
            self.mon.rt.publish(self.ring, records, notify=notify)
            _detected(self.mon.rt, records)
        except ValueError:      # one record over the ring's slot size: publish the others
            ok = []
            for r in records:
                try:
                    self.mon.rt.publish(self.ring, [r], notify=False)
                    ok.append(r)
                except ValueError as e:
                    self.oversize += 1
                    self.log.error("record too big for the ring (raise [rings] slot_size)",
                                   chain=self.chain, pool=r.get("pool"), error=str(e)[:200])
            interrupter = self.mon.rt.publishers[self.ring].interrupter
            if notify and ok and interrupter is not None:
                interrupter.notify()
        self.dirty = True

    # ---- tasks
    def keep(self):
        if self.dirty and self.loaded:
            self.write_snapshot()
        self.mon.report()
        self.mon.collect()
        yield from ()

    def write_snapshot(self) -> None:
        from engine.chain.replica import dump_graph
        pub = self.mon.rt.publishers[self.ring].ring.published
        head = orjson.dumps({"chain": self.chain, "published": pub,
                             "block": self.book.head,
                             "pools": len(self.book.graph)})
        tmp = self.snapshot_path.with_name(f".{self.snapshot_path.name}.tmp")
        try:
            tmp.write_bytes(head + b"\n" + dump_graph(self.book.graph))
            os.replace(tmp, self.snapshot_path)
            self.dirty = False
        except OSError as e:
            self.log.warning("cannot write the graph snapshot", path=str(tmp), error=str(e))

    def check_drift(self):
        """Re-read a sample of pools at the book's head block; a difference is read again once
        the node has a block after that one (engine/chain/drift.py: a node may answer a read at
        its newest block from state still being written) and counts only if it holds.

        The reads run in a thread of their own (`_in_thread`), with a connection of their own,
        the task parked meanwhile: HTTP reads of 8 pools took 100-600 ms here (V3 tick tables),
        and done in the role's thread they held back every log that came during them
        (`bench detect`: 30-40 records queued behind each check at 60 swaps/s)."""
        from engine.chain.drift import capture, compare, sample_of
        from engine.chain.pools import load_pools
        from engine.chain.rpc import RpcClient, RpcError
        f = self.follower
        # only between blocks: the book's newest block complete (its head seen after its logs)
        following = (f.idle and f.active is not None and f.head >= self.book.head
                     and not f.ws.notifications)
        if not (self.loaded and self.rpcs() and (following or not f.endpoints)):
            return       # webhooks only (no endpoints): hooks apply in switches, whole records
        yield from ()
        if self._drift_rpc is None:
            self._drift_rpc = RpcClient(self.s["rpc"][0], timeout=self.s["request_timeout"] * 4)
        book, rpc, at = self.book, self._drift_rpc, self.book.head
        undone = (f.counts["reorgs"], f.counts["resyncs"])
        addresses = sample_of(book, min(8, len(book.graph)), random.Random())
        pools, gross = capture(book, addresses)

        def read(names):
            return compare(pools, gross, load_pools(rpc, book.specs(names), at), names)

        def node_head() -> int:
            return int(rpc.call("eth_blockNumber", []), 16)
        try:
            first = yield from _in_thread(read, addresses)
            suspects = [a for a, w in first.items() if not w.startswith("could not re-read")]
            real: dict[str, str] = {}
            if suspects:
                t_end = time.monotonic() + 5.0
                while (h := node_head()) <= at and time.monotonic() < t_end:
                    yield Wait(until=time.monotonic() + 0.25)
                if self.book is not book or (f.counts["reorgs"], f.counts["resyncs"]) != undone:
                    return          # the chain changed under the check: nothing to conclude
                again = yield from _in_thread(read, suspects)
                if h <= at and node_head() > at:   # a block came while reading: once more
                    again = yield from _in_thread(read, suspects)
                real = {a: w for a, w in again.items() if not w.startswith("could not re-read")}
                self.drift_unconfirmed += len(suspects) - len(real)
        except (RpcError, ValueError) as e:
            self.drift_last = f"check failed: {e}"[:200]
            return
        if self.book is not book:           # resynced meanwhile: the sample means nothing
            return
        self.drift_checks += 1
        if real:
            self.drift += len(real)
            self.drift_last = "; ".join(f"{a}: {w}" for a, w in list(real.items())[:2])[:300]
            self.log.error("drift: the book differs from the chain", chain=self.chain,
                           pools=len(real), what=self.drift_last, book_head=at,
                           follower_head=f.head, follower_done=f.done)

    def load_over_http(self):
        """No WebSocket endpoint, but HTTP ones: read the pools once (retried every 5 s until it
        works), so the Moralis hand-off alone keeps the book.  Without newHeads there is no
        reorg detection by block hashes on this path: the hooks' (block hash, tx, log index)
        dedup only."""
        from engine.chain.rpc import RpcError
        from engine.chain.ws import WsError
        if self.loaded:
            return
        yield from ()
        try:
            head = int(self.rpcs()[0].call("eth_blockNumber", []), 16)
            yield from self.load(head)
        except (RpcError, WsError, ValueError) as e:
            self.follower.status = f"webhooks only: cannot read the pools yet: {e}"[:300]
            self.log.warning("cannot read the pools over HTTP (retrying)", chain=self.chain,
                             error=str(e)[:300])
            return
        self.follower.base = self.follower.done = self.follower.head = head
        self.follower.status = (f"webhooks only (no WebSocket endpoint): pools read at block "
                                f"{head} over HTTP; no reorg detection by block hashes")

    def tasks(self) -> list[Task]:
        c = self.chain
        ts = [_Run(f"follow-{c}", self.follower.run, Priority.CRITICAL, 1.0),
              _Run(f"probe-{c}", self.prober.run, Priority.MEDIUM, 2.0),
              _Run(f"keep-{c}", self.keep, Priority.HIGH, 0.5)]
        if not self.follower.endpoints and self.s["rpc"]:
            ts.append(_Run(f"load-{c}", self.load_over_http, Priority.HIGH, 5.0))
        if self.s["drift_interval"] > 0:
            ts.append(_Run(f"drift-{c}", self.check_drift, Priority.LOW, self.s["drift_interval"]))
        return ts

    def info(self) -> dict:
        st = self.follower.statistics()
        eps = st["endpoints"]
        up = sum(1 for e in eps if e["state"] in ("active", "standby"))
        if not eps and self.s["rpc"]:
            summary = (f"{self.chain}: {st['status']}; {self.hooks['applied']} hand-off logs "
                       f"applied, {self.events} events, drift {self.drift}")
        elif not eps:
            summary = (f"{self.chain}: no endpoints configured (set [chains.{self.chain}] ws, "
                       "or [chains] manifest)")
        else:
            summary = (f"{self.chain}: {st['status']}; head {st['head']}, {self.events} events "
                       f"({self.interrupts} >= {self.s['threshold_bps']} bps, max impact "
                       f"{self.max_impact} bps, last {self.last_impact}), {self.reverted} "
                       f"reverted, {st['reorgs']} reorgs, drift {self.drift}, endpoints "
                       f"{up}/{len(eps)} up"
                       + (f", {st['bad']} bad inputs" if st["bad"] else ""))
        return {"summary": summary, "events": self.events, "interrupts": self.interrupts,
                "max_impact_bps": self.max_impact, "last_impact_bps": self.last_impact,
                "reverted": self.reverted, "oversize": self.oversize, "hooks": dict(self.hooks),
                "drift": self.drift,
                "drift_checks": self.drift_checks, "drift_last": self.drift_last,
                "drift_unconfirmed": self.drift_unconfirmed,
                "load_errors": self.load_errors, "follower": st, "book": self.book.statistics()}


class ChainMonitor(RoleKind):
    """A chain's ingress: node WebSocket logs to `events.<chain>` (see the module text).  Its
    settings are the chain's `[chains.<chain>]` table, not role options."""

    TASKS = {f"{k}-{c}": _Run for k in ("follow", "probe", "keep", "drift", "load") for c in CHAINS}
    METRICS = metrics.MONITOR       # what /metrics reads from the info below
    source = realtime = True

    def __init__(self, rt):
        super().__init__(rt)
        nets = getattr(rt.cfg, "networks", {}) or {}
        self.feeds = {c: _ChainFeed(self, c, nets[c]) for c in self.config.chains}
        self._reported = 0.0
        self._collected, self._collections = 0.0, 0
        self._hooks = None
        self.hooks_other = self.hooks_unreadable = 0
        hooks = "moralis-receiver" in (getattr(self.config, "reads", ()) or ())
        for c, f in self.feeds.items():
            if f.follower.endpoints:
                continue
            if hooks and f.s["rpc"]:
                self.log.warning("no WebSocket endpoint for this chain: the pools are read over "
                                 "HTTP and kept by the Moralis webhooks alone (no reorg "
                                 f"detection by block hashes; set [chains.{c}] ws for it)", chain=c)
            else:
                self.log.warning("no WebSocket endpoint for this chain: nothing to follow "
                                 f"(set [chains.{c}] ws, or [chains] manifest; SIGHUP reloads)",
                                 chain=c)

    def tasks(self):
        return [t for f in self.feeds.values() for t in f.tasks()]

    def handle(self, events: list[dict]) -> list[dict]:
        """Hand-off records from the Moralis receiver (`reads`): the logs they name, read back
        from the inbox, applied like the WebSocket's.  Other chains' records are skipped; an
        unreadable record is counted (`hooks_unreadable`), never fatal."""
        from engine.chain.hooks import HookReader
        if self._hooks is None:
            self._hooks = HookReader(self.rt.store)
        for ev in events:
            if ev.get("type") != "hook":
                continue
            feed = self.feeds.get(ev.get("chain"))
            if feed is None:
                self.hooks_other += 1
                continue
            try:
                logs = self._hooks.logs(ev)
                t_origin = int(ev.get("t_origin") or time.monotonic_ns())
            except Exception as e:   # a record or inbox entry we cannot read: count, go on
                self.hooks_unreadable += 1
                self.log.warning("hand-off record unreadable (skipped)", inbox=ev.get("inbox"),
                                 error=repr(e)[:200])
                continue
            if not logs:
                self.hooks_unreadable += 1
                continue
            feed.apply_hook(logs, t_origin)
        return []

    def report(self) -> None:
        now = time.monotonic()
        if now - self._reported < 0.4:
            return
        self._reported = now
        infos = {c: f.info() for c, f in self.feeds.items()}
        self.rt.set_info({"summary": " | ".join(i["summary"] for i in infos.values()),
                          "chains": infos, "hooks_other_chains": self.hooks_other,
                          "hooks_unreadable": self.hooks_unreadable})

    def collect(self) -> None:
        """The garbage collector runs here, between notifications (the keep tasks, every
        0.5 s), not wherever an allocation makes it due: an automatic generation-0 collection
        fell inside about one log in 300 and cost it 0.45-0.7 ms (`bench detect --stages`).
        Generation 1 every 10 s, a full collection every 5 minutes."""
        now = time.monotonic()
        if now - self._collected < 0.5:
            return
        self._collected, self._collections = now, self._collections + 1
        k = self._collections
        gc.collect(2 if k % 600 == 0 else 1 if k % 20 == 0 else 0)

    def on_start(self) -> None:
        gc.disable()        # see collect()
        self.report()

    def on_stop(self) -> None:
        for f in self.feeds.values():
            f.prober.close()
            if f.follower.ws is not None:
                f.follower.ws.close()
            for r in (*(f._rpcs or ()), *([f._drift_rpc] if f._drift_rpc else [])):
                r.close()
