"""`syndicate bench ring [--json] [--records N] [--samples M] [--readers K,..] [--binary-decode D]`

Throughput and one-way latency of engine/core/ring.py against multiprocessing.Queue and
faster-fifo, measured in the same run, one writer and 1, 3 and 5 reader processes (forked, as
the supervisor forks roles).  The payload is the hot record of the engine, the pool update of
engine/chain/records.py (v3 swaps over 8 pools), in three forms:

    raw      240 bytes, nothing decoded (the transport alone)
    orjson   dumps in the writer (~490 B), loads of every record in every reader (the cold path)
    binary   the 240-byte layout, encoded once by the source before the clock starts (encoding
             is the monitor's cost whatever the transport: see the codec rows); every reader
             compares each record's pool bytes with the one pool it watches and decodes the
             ones that match (1 in 8), as an agent keeps only its pools' replicas: the fields
             a replica needs, read in place (records.state; --binary-decode dict: the dict)

A ring reader takes a `Block` per `poll_block` (one copy of the slots, records read in place):
binary readers find their pool's records with `Block.matching` (bytes.find over the block) and
decode those from a view; orjson readers load every record from a view.  The `poll` rows (one
bytes per record, a compare per record: what roles use today) are shown beside faster-fifo.

    writer ──publish_many──▶ Ring (shared memory) ──poll_block──▶ reader 1 … reader k  (broadcast)
    writer ──put × k──────▶ one mp.Queue / faster-fifo queue per reader ──get──▶ reader i

* throughput: N records to every reader; records/s = N / (last record seen by the slowest
  reader - writer start).  The ring writer keeps the slowest reader inside the ring's lossless
  window (the benchmark's own flow control, `slowest_cursor()`; the ring never waits), so
  every reader gets every record: any loss is reported.  The baselines carry the same bytes
  and their readers do the same decoding.
* codec: µs per record of records.encode / decode / peek beside orjson dumps / loads, in
  this process.
* latency: M records, one every ~200 µs, each carrying CLOCK_MONOTONIC at publish; a reader
  subtracts it from its clock on receipt.  Ring readers busy-poll `pending()` and yield the CPU
  between checks (sched_yield); queue readers block in get().

Every child ignores SIGINT, dies with the parent (PR_SET_PDEATHSIG), and the parent kills and
reaps them and unlinks every segment on any exit (normal, error, Ctrl-C, SIGTERM).  Segments
left by a benchmark that was SIGKILLed are removed by the next run (their pid is gone).
"""
from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import signal
import struct
import sys
import time

import orjson

from engine.bench import payloads as payload_module
from engine.bench.payloads import (CHUNK, POOLS, RECORD, block_work, codec_costs, payloads,
                                   reader_work)
from engine.bench.report import Comparison, Summary, emit
from engine.core.ring import Ring

SLOTS = 4096
SLOT_SIZE = {"raw": 256, "binary": 256, "orjson": 512}   # payload + the 16-byte slot header
LATENCY_GAP = 0.0002           # seconds between latency probes
IDLE_SLEEP = 0.00005           # an idle ring reader's nap in the "sleep" wait strategy
_ctx = multiprocessing.get_context("fork")
_STAMP = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------------------------------------
# process bookkeeping: everything started or created is undone on every exit path
# ---------------------------------------------------------------------------------------------

class _Cleanup:
    def __init__(self):
        self.procs: list[multiprocessing.Process] = []
        self.rings: list[Ring] = []
        self.queues: list = []

    def start(self, fn, *args) -> multiprocessing.Process:
        p = _ctx.Process(target=_child_main, args=(fn, args), daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def ring(self, name: str, **kw) -> Ring:
        Ring.unlink(name)
        r = Ring.create(name, **kw)
        self.rings.append(r)
        return r

    def join(self, deadline: float, what: str) -> None:
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                raise RuntimeError(f"{what}: a process did not finish in time (wedged?)")
            if p.exitcode != 0:
                raise RuntimeError(f"{what}: a process failed with exit code {p.exitcode}")

    def finish(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        self.procs.clear()
        for q in self.queues:
            try:
                q.close()
                if hasattr(q, "join_thread"):
                    q.cancel_join_thread()
            except Exception:
                pass
        self.queues.clear()
        for r in self.rings:
            r.close()
            Ring.unlink(r.name)
        self.rings.clear()


def _child_main(fn, args) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    fn(*args)


def _sweep_stale() -> None:
    """Unlink ring segments of earlier benchmark runs whose process no longer exists."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return
    for n in names:
        if not n.startswith("syn.bench"):
            continue
        pid = n[len("syn.bench"):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            Ring.unlink("/" + n)


def _alive(pid: int) -> bool:
    """True if pid runs (a zombie does not: in a container nobody may ever reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        return True


# ---------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------

def _ring_write(ring: Ring, n: int, kind: str, batched: bool, barrier, out) -> None:
    k = len(ring.statistics()["readers"])
    window = ring.capacity - 2 * ring.claim_block - CHUNK
    raw, events = payloads(kind)
    barrier.wait()
    t0 = time.perf_counter_ns()
    seq = 0
    while seq < n:
        # the benchmark's flow control: keep every reader inside the lossless window
        while seq - ring.slowest_cursor() > window:
            os.sched_yield()
        m = min(CHUNK, n - seq)
        recs = raw[:m] if raw is not None else [orjson.dumps(e) for e in events[:m]]
        if batched:
            ring.publish_many(recs)
        else:
            for r in recs:
                ring.publish(r)
        seq += m
    out.put(("writer", t0, k))


def _ring_read(reader, n: int, kind: str, block: bool, barrier, out) -> None:
    """Read n records: by `poll_block` and `block_work` (block=True), or by `poll` and
    `reader_work` on each record (the list-of-bytes API the roles use)."""
    work = (block_work if block else reader_work)(kind, reader.index)
    barrier.wait()
    got = lost = 0
    while got + lost < n:
        if not reader.pending():
            os.sched_yield()
            continue
        if block:
            b = reader.poll_block(256)
            lost += b.lost
            got += len(b)
            if work is not None:
                work(b)
            continue
        b = reader.poll(256)
        lost += b.lost
        got += len(b.records)
        if work is not None:
            for r in b.records:
                work(r)
    out.put(("reader", time.perf_counter_ns(), got, lost))


def _queue_write(queues, n: int, kind: str, fifo: bool, barrier, out) -> None:
    raw, events = payloads(kind)
    barrier.wait()
    t0 = time.perf_counter_ns()
    seq = 0
    while seq < n:
        m = min(CHUNK, n - seq)
        recs = raw[:m] if raw is not None else [orjson.dumps(e) for e in events[:m]]
        for q in queues:
            if fifo:
                q.put_many(recs, timeout=60)
            else:
                for r in recs:
                    q.put(r)
        seq += m
    out.put(("writer", t0, len(queues)))
    if not fifo:
        for q in queues:
            q.close()
            q.join_thread()


def _queue_read(q, index: int, n: int, kind: str, fifo: bool, barrier, out) -> None:
    work = reader_work(kind, index)
    barrier.wait()
    got = 0
    while got < n:
        if fifo:
            recs = q.get_many(timeout=60, max_messages_to_get=256)
        else:
            recs = (q.get(timeout=60),)
        got += len(recs)
        if work is not None:
            for r in recs:
                work(r)
    out.put(("reader", time.perf_counter_ns(), got, 0))


def _latency_write(send, m: int, barrier, out) -> None:
    buf = bytearray(RECORD)
    barrier.wait()
    for _ in range(m):
        _STAMP.pack_into(buf, 0, time.perf_counter_ns())
        send(bytes(buf))
        time.sleep(LATENCY_GAP)
    out.put(("writer", 0, 0))


def _latency_ring_read(reader, m: int, idle: str, barrier, out) -> None:
    barrier.wait()
    samples = []
    now, unpack = time.perf_counter_ns, _STAMP.unpack_from
    while len(samples) < m:
        if not reader.pending():
            if idle == "yield":
                os.sched_yield()
            else:
                time.sleep(IDLE_SLEEP)
            continue
        b = reader.poll(256)
        t = now()
        samples.extend((t - unpack(r)[0]) / 1000 for r in b.records)
        if b.lost:
            raise RuntimeError(f"latency reader lost {b.lost} records")
    out.put(("samples", samples))


def _latency_queue_read(q, m: int, fifo: bool, barrier, out) -> None:
    barrier.wait()
    samples = []
    now, unpack = time.perf_counter_ns, _STAMP.unpack_from
    while len(samples) < m:
        recs = q.get_many(timeout=60) if fifo else (q.get(timeout=60),)
        t = now()
        samples.extend((t - unpack(r)[0]) / 1000 for r in recs)
    out.put(("samples", samples))


# ---------------------------------------------------------------------------------------------
# scenarios (run in the parent)
# ---------------------------------------------------------------------------------------------

def _collect(c: _Cleanup, out, expected: int, what: str, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < expected:
        if out.empty():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: no result within {timeout:.0f} s (wedged?)")
            if any(p.exitcode not in (None, 0) for p in c.procs):
                raise RuntimeError(f"{what}: a process failed")
            time.sleep(0.005)
            continue
        got.append(out.get())
    c.join(deadline, what)
    return got


def _throughput(transport: str, k: int, n: int, kind: str, name: str) -> tuple[float, int]:
    """Records/s delivered to every one of k readers, and records lost (ring only)."""
    c = _Cleanup()
    try:
        barrier, out = _ctx.Barrier(k + 1), _ctx.SimpleQueue()
        if transport.startswith("ring"):
            ring = c.ring(name, slots=SLOTS, slot_size=SLOT_SIZE[kind], max_readers=k)
            readers = [ring.reader(i) for i in range(k)]
            for r in readers:
                c.start(_ring_read, r, n, kind, transport == "ring", barrier, out)   # poll_block
            c.start(_ring_write, ring, n, kind, transport != "ring-single", barrier, out)
        else:
            fifo = transport == "faster-fifo"
            queues = _queues(c, k, fifo)
            for i, q in enumerate(queues):
                c.start(_queue_read, q, i, n, kind, fifo, barrier, out)
            c.start(_queue_write, queues, n, kind, fifo, barrier, out)
        results = _collect(c, out, k + 1, f"{transport} throughput", 60 + n / 2000)
        t0 = next(r[1] for r in results if r[0] == "writer")
        ends = [r for r in results if r[0] == "reader"]
        lost = sum(r[3] for r in ends)
        return n / ((max(r[1] for r in ends) - t0) / 1e9), lost
    finally:
        c.finish()


def _queues(c: "_Cleanup", k: int, fifo: bool) -> list:
    """One baseline queue per reader (faster-fifo or multiprocessing.Queue), cleaned up by c."""
    if fifo:
        from faster_fifo import Queue as FastQueue
        queues = [FastQueue(max_size_bytes=4 * 1024 * 1024) for _ in range(k)]
    else:
        queues = [_ctx.Queue() for _ in range(k)]
    c.queues.extend(queues)
    return queues


def _latency(transport: str, k: int, m: int, name: str) -> list[float]:
    c = _Cleanup()
    try:
        barrier, out = _ctx.Barrier(k + 1), _ctx.SimpleQueue()
        if transport.startswith("ring"):
            ring = c.ring(name, slots=SLOTS, slot_size=SLOT_SIZE["raw"], max_readers=k)
            idle = transport.split("-")[1]
            for i in range(k):
                c.start(_latency_ring_read, ring.reader(i), m, idle, barrier, out)
            c.start(_latency_write, ring.publish, m, barrier, out)
        else:
            fifo = transport == "faster-fifo"
            queues = _queues(c, k, fifo)
            for q in queues:
                c.start(_latency_queue_read, q, m, fifo, barrier, out)

            def send(data, queues=queues, fifo=fifo):
                for q in queues:
                    q.put(data, timeout=60) if fifo else q.put(data)
            c.start(_latency_write, send, m, barrier, out)
        results = _collect(c, out, k + 1, f"{transport} latency", 60 + m * LATENCY_GAP * 4)
        return [s for r in results if r[0] == "samples" for s in r[1]]
    finally:
        c.finish()


def run(n: int, m: int, reader_counts: list[int], progress) -> tuple[list[Comparison], dict]:
    base = f"/syn.bench{os.getpid()}"
    results: list[Comparison] = []
    lost_total = {}
    results.extend(codec_costs())
    for k in reader_counts:
        name = f"{base}.ring{k}"
        for kind in ("raw", "orjson", "binary"):
            figures = {}
            # record at a time: raw only; poll's list of bytes: the real payloads
            extra = "ring-single" if kind == "raw" else "ring-poll"
            for transport in ("ring", extra, "mp.Queue", "faster-fifo"):
                progress(f"throughput {kind} {transport} k={k}")
                figures[transport], lost = _throughput(transport, k, n, kind, name)
                if transport.startswith("ring"):
                    lost_total[f"{transport} {kind} k={k}"] = lost
            label = {"raw": f"{RECORD} B bytes", "orjson": "pool update, orjson (~490 B)",
                     "binary": f"pool update, binary ({RECORD} B, own pool: "
                               f"{payload_module.BINARY_DECODE})"}[kind]
            ring_s = Summary.single("ring publish_many/poll_block", figures["ring"])
            for baseline in ("mp.Queue", "faster-fifo"):
                how = "put per record" if baseline == "mp.Queue" else "put_many/get_many"
                results.append(Comparison(
                    f"throughput, {label}, 1 writer -> {k} reader(s)", "records/s", ring_s,
                    Summary.single(f"{baseline} ({how}, one per reader)", figures[baseline]),
                    higher_is_better=True))
            if kind != "raw":
                results.append(Comparison(
                    f"throughput, {label}, 1 writer -> {k} reader(s), poll (a bytes per record)",
                    "records/s", Summary.single("ring publish_many/poll", figures["ring-poll"]),
                    Summary.single("faster-fifo (put_many/get_many, one per reader)",
                                   figures["faster-fifo"]), higher_is_better=True))
            if kind == "raw":
                results.append(Comparison(
                    f"throughput, {label}, 1 writer -> {k} reader(s), record at a time",
                    "records/s", Summary.single("ring publish()/poll", figures["ring-single"]),
                    Summary.single("mp.Queue (put per record)", figures["mp.Queue"]),
                    higher_is_better=True))
        lat = {}
        for transport in ("ring-yield", "ring-sleep", "mp.Queue", "faster-fifo"):
            progress(f"latency {transport} k={k}")
            lat[transport] = _latency(transport, k, m, name)
        for ours, baseline in (("ring-yield", "mp.Queue"), ("ring-yield", "faster-fifo"),
                               ("ring-sleep", "mp.Queue")):
            how = ("idle reader: sched_yield" if ours == "ring-yield"
                   else f"idle reader: sleep {IDLE_SLEEP * 1e6:.0f} µs")
            results.append(Comparison(
                f"one-way latency, {RECORD} B, 1 writer -> {k} reader(s)", "us",
                Summary.of(f"ring ({how})", lat[ours]),
                Summary.of(f"{baseline} (blocking get)", lat[baseline]),
                notes="a record every ~200 µs; publish to receipt, CLOCK_MONOTONIC"))
    return results, {"ring_records_lost": lost_total}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="syndicate bench ring", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print JSON (engine/bench/report.py)")
    p.add_argument("--records", type=int, default=50_000, metavar="N",
                   help="records per throughput run (default 50000)")
    p.add_argument("--samples", type=int, default=2_000, metavar="M",
                   help="latency probes per run (default 2000)")
    p.add_argument("--readers", default="1,3,5", metavar="K,K,..",
                   help="reader process counts (default 1,3,5)")
    p.add_argument("--binary-decode", choices=("fields", "dict"), default="fields",
                   help="how far a binary reader decodes its pool's records: the fields a "
                        "replica needs, read in place (default), or the whole dict")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    try:
        counts = [int(x) for x in args.readers.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= k <= 64 for k in counts):
        print(f"syndicate bench ring: --readers {args.readers!r}: give counts from 1 to 64, "
              f"comma-separated", file=sys.stderr)
        return 2
    if args.records < 1000:
        print(f"syndicate bench ring: --records {args.records}: at least 1000", file=sys.stderr)
        return 2
    if args.samples < 10:
        print(f"syndicate bench ring: --samples {args.samples}: at least 10", file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, on_term)
    progress = (lambda msg: print(f"  … {msg}", file=sys.stderr, flush=True)) \
        if sys.stderr.isatty() else (lambda msg: None)
    _sweep_stale()
    payload_module.BINARY_DECODE = args.binary_decode   # read by the forked readers
    try:
        results, extra = run(args.records, args.samples, counts, progress)
    except KeyboardInterrupt:
        print("syndicate bench ring: interrupted; processes stopped, segments removed",
              file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"syndicate bench ring: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    extra["config"] = {"records": args.records, "samples": args.samples, "readers": counts,
                       "slots": SLOTS, "slot_size": SLOT_SIZE, "chunk": CHUNK, "pools": POOLS,
                       "binary_decode": args.binary_decode}
    emit("ring", results, args.json, extra)
    return 0
