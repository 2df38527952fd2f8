"""`syndicate bench detect --stages`: where a swap's detection time goes, stage by stage.

The monitor process cannot stamp each stage without carrying instrumentation in the hot path,
so this pass runs the same parts in a child process of its own: engine/chain/ws.py's client,
the Follower, a PoolBook and an EventPublisher into a real Ring, driven by engine/core's
TaskManager as a role drives them (select on the task's socket, slices), at the monitor's
SCHED_FIFO priority, with its garbage-collector policy (off; a generation-0 collection every
0.5 s when idle, as ChainMonitor.collect).  Subclasses (in the child only) add one stamp per stage:

    recv        WsClient.pump: right after the recv that brought the frame (= t_origin)
    parsed      WsClient._message: the frame's JSON parsed, the notification queued
    pumped      WsClient.pump returned (the rest of that read handled)
    apply       PoolBook.apply called (the follower's drain reached this log)
    applied     PoolBook.apply returned the record
    publish     the follower's publish callback called (its batch of records complete)
    t_written   EventPublisher.publish_many's stamp (before orjson.dumps and the ring copy)
    written     publish_many returned: the record is in the ring, visible to readers

Only the follow task runs here (the monitor also has probe, keep and drift tasks), so these
stages add up to a little less than the monitor's own figure.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import resource
import select
import shutil
import tempfile
import time
from pathlib import Path

from .report import Summary

STAGES = ("recv", "parsed", "pumped", "apply", "applied", "publish", "t_written", "written")


class _Log:
    def __getattr__(self, level):
        return lambda msg, **kw: None


def _child(conn, chain: str, settings: dict, chain_manifest: dict, ring_name: str,
           idle: float = 1.0) -> None:
    import orjson

    import engine.chain.follow as follow
    from engine.chain.follow import Follower
    from engine.chain.poolbook import PoolBook
    from engine.chain.pools import specs_from_manifest, load_pools
    from engine.chain.rpc import RpcClient
    from engine.chain.ws import WsClient
    from engine.core.ring import Ring
    from engine.core.switch import EventPublisher
    from engine.core.tasks import Priority, Task, TaskContext, TaskManager

    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except OSError:
        pass
    clock = time.monotonic_ns
    stamps: dict[tuple[str, int], dict] = {}

    class StampingWs(WsClient):
        def pump(self):
            n0 = len(self.notifications)
            got = super().pump()
            t = clock()
            for i in range(n0, len(self.notifications)):
                r = (self.notifications[i][0].get("params") or {}).get("result")
                if isinstance(r, dict) and "transactionHash" in r:
                    r["_t_pumped"] = t
            return got

        def _message(self, payload, t_origin, out):
            n = len(self.notifications)
            super()._message(payload, t_origin, out)
            t = clock()
            for i in range(n, len(self.notifications)):
                r = (self.notifications[i][0].get("params") or {}).get("result")
                if isinstance(r, dict) and "transactionHash" in r:
                    r["_t_parsed"] = t

    class StampingBook(PoolBook):
        def apply(self, log, t_origin):
            t = clock()
            rec = super().apply(log, t_origin)
            if rec is not None and rec.get("type") == "pool":
                stamps[(rec["tx"], rec["log_index"])] = {
                    "recv": t_origin, "parsed": log.get("_t_parsed", t_origin),
                    "pumped": log.get("_t_pumped", t_origin), "apply": t, "applied": clock(),
                    "event": rec["event"]}
            return rec

    follow.WsClient = StampingWs       # this child only: the follower builds its clients by name
    ring = Ring.create(ring_name, slots=1 << 14, slot_size=1024, max_readers=2)
    try:
        pub = EventPublisher(ring, None)

        def publish(records):
            t = clock()
            pub.publish_many(records, notify=False)
            done = clock()
            for r in records:
                s = stamps.get((r.get("tx"), r.get("log_index")))
                if s is not None:
                    s.update(publish=t, t_written=r["t_written"], written=done)

        book = StampingBook(chain, threshold_bps=settings["threshold_bps"],
                            reorg_depth=settings["reorg_depth"], factories=settings["factories"])
        rpc = RpcClient(settings["rpc"][0], timeout=20)
        specs = [s for s in specs_from_manifest(chain_manifest) if s.address in settings["pools"]]

        def load(head):
            book.load(load_pools(rpc, specs, head))
            yield from ()

        f = Follower(chain, settings, book, publish=publish, log=_Log(), on_start=load)
        catch_ups: list[int] = []
        orig_catch_up = f._catch_up

        def catch_up(ws, to):        # counted: a catch-up is round trips to the node
            t = clock()
            yield from orig_catch_up(ws, to)
            catch_ups.append((clock() - t) // 1000)
        f._catch_up = catch_up

        class FollowTask(Task):
            def run(self, ctx):
                return f.run()

        tm = TaskManager([FollowTask(name="follow", interval=1.0, priority=Priority.CRITICAL)],
                         TaskContext("stages"))
        flag, ready, stop_at = [False], False, None
        collections: list[tuple[int, int]] = []     # (generation, µs) during the run
        gc_start, collected = [0], [0.0]

        def on_gc(phase, info):
            if phase == "start":
                gc_start[0] = clock()
            else:
                collections.append((info["generation"], (clock() - gc_start[0]) // 1000))
        while True:
            if not tm.run_slice(flag):
                t, rd, wr = tm.next_wakeup()
                r, _, _ = select.select([conn.fileno(), *rd], wr, [],
                                        0.05 if t is None else min(t, 0.05))
                if conn.fileno() in r and conn.recv() == "stop":
                    stop_at = time.monotonic() + idle
                if ready and time.monotonic() - collected[0] >= 0.5:   # as ChainMonitor.collect
                    collected[0] = time.monotonic()
                    gc.collect(0)
            if not ready and f.active is not None:
                gc.freeze()            # as a role does after its start
                gc.disable()           # and as the chain monitor does: collect() when idle
                gc.callbacks.append(on_gc)
                ivcsw0 = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
                conn.send("ready")
                ready = True
            if stop_at is not None and time.monotonic() >= stop_at:
                break
        conn.send({"stamps": [[k[0], k[1], s] for k, s in stamps.items() if "written" in s],
                   "gc": collections, "catch_ups": catch_ups,
                   "preempted": resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - ivcsw0,
                   "counts": dict(f.counts), "book": orjson.loads(orjson.dumps(
                       book.statistics(), default=str))})
    finally:
        ring.close()
        Ring.unlink(ring_name)
        conn.close()


def run_stages(net, chain: str, swaps: int, rate: float, seed: int) -> dict:
    """Per-stage µs figures over `swaps` swaps; {"stages": {name: summary}, ...}."""
    from engine.config import load, render
    from engine.devnet.lean import LeanTraffic

    tmp = Path(tempfile.mkdtemp(prefix="syndicate-bench-stages-"))
    try:
        manifest = net.write_manifest(tmp / "manifest.json")
        (tmp / "engine.toml").write_text(render({
            "engine": {"name": f"benchstages{os.getpid()}", "state_dir": str(tmp / "state")},
            "chains": {"manifest": str(manifest)},
            "roles": {f"monitor-{chain}": {"kind": "roles.monitor:ChainMonitor",
                                           "chains": [chain]}}}))
        settings = load(tmp / "engine.toml").networks[chain]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    ring_name = f"/syn.benchstages{os.getpid()}.events"
    proc = ctx.Process(target=_child, args=(child, chain, settings, net.manifest["chains"][chain],
                                            ring_name), daemon=True)
    proc.start()
    child.close()
    lean = LeanTraffic(net.manifest, chain, seed=seed + 1000)
    try:
        if not conn.poll(60) or conn.recv() != "ready":
            raise RuntimeError("the stages pass did not start following its node")
        t0 = time.monotonic()
        for i in range(swaps):
            lean.step()
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        lean.settle()
        conn.send("stop")
        if not conn.poll(120):
            raise RuntimeError("the stages pass did not finish")
        out = conn.recv()
    finally:
        lean.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        conn.close()
        from engine.core.ring import Ring
        Ring.unlink(ring_name)
    rows = [s for _, _, s in out["stamps"]]
    steps = {f"{a} → {b}": [(s[b] - s[a]) / 1e3 for s in rows]
             for a, b in zip(STAGES, STAGES[1:])}
    steps["recv → t_written (the figure)"] = [(s["t_written"] - s["recv"]) / 1e3 for s in rows]
    for kind in ("sync", "swap"):
        steps[f"  of which {kind} records"] = [(s["t_written"] - s["recv"]) / 1e3 for s in rows
                                              if s.get("event") == kind]
    steps["recv → written (in the ring)"] = [(s["written"] - s["recv"]) / 1e3 for s in rows]
    gcs = out["gc"]
    return {"records": len(rows), "load1": os.getloadavg()[0], "counts": out["counts"],
            "catch_ups": {"n": len(out["catch_ups"]), "max_us": max(out["catch_ups"], default=0)},
            "preempted": out["preempted"],
            "gc": {"collections": len(gcs), "by_generation": [sum(1 for g, _ in gcs if g == k)
                                                              for k in range(3)],
                   "max_us": max((u for _, u in gcs), default=0),
                   "total_ms": round(sum(u for _, u in gcs) / 1e3, 2)},
            "stages": {k: vars(Summary.of(k, v)) for k, v in steps.items()}}


def render_stages(st: dict) -> str:
    out = [f"\nstages (a child process with the same follower, book and ring publish; "
           f"{st['records']} records, load {st['load1']:.2f}) [us]",
           f"  {'':<34}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}{'mean':>9}"]
    for name, s in st["stages"].items():
        out.append(f"  {name:<34}{s['p50']:>9.1f}{s['p99']:>9.1f}{s['p99_9']:>9.1f}"
                   f"{s['max']:>9.1f}{s['mean']:>9.1f}")
    g = st["gc"]
    out.append(f"  gc during the pass (idle ones included): {g['collections']} collections (by generation "
               f"{g['by_generation']}), max {g['max_us']} us, total {g['total_ms']} ms; "
               f"follower counts {st['counts']}; catch-ups (round trips to the node) "
               f"{st['catch_ups']['n']}, the longest {st['catch_ups']['max_us']} us; involuntary "
               f"context switches (preempted) {st['preempted']}")
    return "\n".join(out)
