"""engine/core/ring.py across real processes: fork, stress with checked content, SIGKILL.

Every record carries its own seq, a length that depends on the seq and a CRC, so a reader can
prove that what it was given is the whole, right record.  Processes are forked (the supervisor's
way: the Ring is created before fork and used in the child as is); a child that fails prints
its traceback and exits non-zero; one that hangs past its deadline is killed and the test fails
as a wedge.  Nothing here asserts speed.
"""
from __future__ import annotations

import ctypes
import os
import random
import select
import signal
import struct
import time
import traceback
import zlib

import orjson
import pytest

from engine.core.ring import _HDR, SLOT_HEADER, Batch, Ring

pytestmark = pytest.mark.timeout(180)

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
END = b"END"


# ---------------------------------------------------------------------------------------------
# records that can be checked
# ---------------------------------------------------------------------------------------------

def record_size(seq: int, max_payload: int) -> int:
    return 12 + (seq * 2654435761) % (max_payload - 12 + 1)


def make_record(seq: int, max_payload: int) -> bytes:
    body = (seq.to_bytes(8, "little") * (max_payload // 8 + 1))[:record_size(seq, max_payload) - 12]
    head = struct.pack("<Q", seq)
    return head + zlib.crc32(head + body).to_bytes(4, "little") + body


def check_record(seq: int, rec: bytes, max_payload: int) -> None:
    assert len(rec) == record_size(seq, max_payload), f"seq {seq}: length {len(rec)}"
    got = int.from_bytes(rec[:8], "little")
    assert got == seq, f"delivered as seq {seq}, carries seq {got}"
    assert zlib.crc32(rec[:8] + rec[12:]) == int.from_bytes(rec[8:12], "little"), f"seq {seq}: CRC"
    assert rec == make_record(seq, max_payload), f"seq {seq}: content"


# ---------------------------------------------------------------------------------------------
# forked children
# ---------------------------------------------------------------------------------------------

class Child:
    """fn(*args) in a forked process; its return value comes back as JSON through a pipe."""

    def __init__(self, fn, *args, **kwargs):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:   # child: never return into pytest
            code = 0
            try:
                os.close(r)
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                result = fn(*args, **kwargs)
                data = orjson.dumps(result)
                while data:
                    data = data[os.write(w, data):]
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        self._r = r
        self.status: int | None = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def join(self, timeout: float = 60.0):
        """The child's result; fails (after killing it) if it does not finish in time."""
        deadline = time.monotonic() + timeout
        chunks = []
        while self._r is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                self.reap()
                pytest.fail(f"child {self.pid} still running after {timeout} s: wedged")
            if select.select([self._r], [], [], min(left, 0.5))[0]:
                chunk = os.read(self._r, 65536)
                if not chunk:
                    os.close(self._r)
                    self._r = None
                chunks.append(chunk)
        self.reap()
        assert os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0, \
            f"child {self.pid} failed (status {self.status}); its traceback is in stderr"
        return orjson.loads(b"".join(chunks))

    def reap(self) -> int:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        if self._r is not None:
            os.close(self._r)
            self._r = None
        return self.status


@pytest.fixture
def children():
    """Start children through this; whatever is left is killed and reaped at teardown."""
    started: list[Child] = []

    def start(fn, *args, **kwargs) -> Child:
        c = Child(fn, *args, **kwargs)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()
        c.reap()


@pytest.fixture
def ring_name(unique_name):
    name = f"/syn.{unique_name}.ring"
    yield name
    Ring.unlink(name)


# ---------------------------------------------------------------------------------------------
# roles a child can play
# ---------------------------------------------------------------------------------------------

def write_numbered(ring: Ring, n: int, seed: int, pace: int | None = None) -> dict:
    """Publish records 0..n-1 in random batches (single publishes too).  With `pace`, keep that
    reader inside the ring's lossless window (the ring itself never waits: this is the test's
    own flow control, read from statistics())."""
    rnd = random.Random(seed)
    seq = ring.published
    window = ring.capacity - 2 * ring.claim_block
    stop_at = time.monotonic() + 90
    while seq < n:
        k = min(n - seq, rnd.choice([1, 1, 3, 17, 64, 200]))
        if pace is not None:
            k = min(k, window)
            while seq + k - ring.statistics()["readers"][pace]["cursor"] > window:
                assert time.monotonic() < stop_at, "paced reader stopped reading"
                time.sleep(0.0001)
        recs = [make_record(s, ring.max_payload) for s in range(seq, seq + k)]
        if k == 1:
            assert ring.publish(recs[0]) == seq
        else:
            assert ring.publish_many(recs) == seq + k - 1
        seq += k
        if rnd.random() < 0.01:
            time.sleep(0.0005)
    return {"published": ring.published}


def write_forever(ring: Ring, seed: int) -> dict:
    """Publish checkable records until killed."""
    rnd = random.Random(seed)
    while True:
        seq = ring.published
        k = rnd.randint(1, 300)
        ring.publish_many([make_record(s, ring.max_payload) for s in range(seq, seq + k)])


def read_until(reader, n: int | None, *, naps: float = 0.0, most: int = 256,
               deadline: float = 90.0, block: bool = False) -> dict:
    """Read and check every record until the cursor reaches n (or an END record if n is None).
    Every seq is either delivered once, in order, or counted lost: never skipped silently.
    block=True reads by poll_block (its records() are what poll would have given)."""
    maxp = reader.ring.max_payload
    rnd = random.Random(reader.index)
    delivered = lost = 0
    stop_at = time.monotonic() + deadline
    while n is None or reader.cursor < n:
        assert time.monotonic() < stop_at, f"reader {reader.index} stuck at {reader.cursor}"
        before = reader.cursor
        if block:
            blk = reader.poll_block(most)
            b = Batch(blk.records(), blk.lost, blk.first_seq)
        else:
            b = reader.poll(most)
        assert b.lost >= 0
        if b.records:
            assert b.first_seq == before + b.lost, (before, b.lost, b.first_seq)
        assert reader.cursor == before + b.lost + len(b.records)
        lost += b.lost
        for k, rec in enumerate(b.records):
            if rec == END and n is None:
                return {"delivered": delivered, "lost": lost, "end": b.first_seq + k}
            check_record(b.first_seq + k, rec, maxp)
            delivered += 1
        if not b.records:
            time.sleep(0.0002)
        elif naps and rnd.random() < naps:
            time.sleep(0.002)
    return {"delivered": delivered, "lost": lost, "cursor": reader.cursor}


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

def test_stress_one_writer_three_readers_every_record_intact(ring_name, children):
    n = 40_000
    ring = Ring.create(ring_name, slots=64, slot_size=256, max_readers=4)
    try:
        # readers made before fork, used in the children: the supervisor's way
        readers = [ring.reader(i) for i in range(4)]
        kids = [children(read_until, readers[0], n),                  # the writer waits for it
                children(read_until, readers[1], n, naps=0.0, most=5),
                children(read_until, readers[2], n, naps=0.05),   # often lapped
                children(read_until, readers[3], n, naps=0.05, block=True)]   # so is this
        writer = children(write_numbered, ring, n, 1, pace=0)
        assert writer.join()["published"] == n
        results = [kid.join() for kid in kids]
        for got in results:
            assert got["delivered"] + got["lost"] == n
            assert got["cursor"] == n
        assert results[0] == {"delivered": n, "lost": 0, "cursor": n}
        stats = ring.statistics()
        assert stats["published"] == n and stats["writer_pid"] == writer.pid
        assert [r["cursor"] for r in stats["readers"]] == [n, n, n, n]
        assert [r["pid"] for r in stats["readers"]] == [k.pid for k in kids]
    finally:
        ring.close()


def test_readers_that_start_after_many_laps_lose_exactly_the_overwritten(ring_name, children):
    ring = Ring.create(ring_name, slots=64, slot_size=128, max_readers=3)
    try:
        late = ring.reader(0)            # cursor 0, reads only after everything is written
        assert children(write_numbered, ring, 1000, 2).join()["published"] == 1000
        claimed = ring.statistics()["claimed"]
        got = children(read_until, late, 1000).join()
        assert got == {"delivered": 1000 - (claimed - 64), "lost": claimed - 64, "cursor": 1000}

        def oldest_then_all(r: Ring):
            rd = r.reader(1, start="oldest")
            first = rd.cursor
            return {"first": first, **read_until(rd, 1000)}
        got = children(oldest_then_all, ring).join()
        assert got == {"first": claimed - 64, "delivered": 1000 - (claimed - 64), "lost": 0,
                       "cursor": 1000}
    finally:
        ring.close()


def test_sigkill_readers_mid_read_wedges_nobody(ring_name, children):
    n = 60_000
    ring = Ring.create(ring_name, slots=256, slot_size=256, max_readers=2)
    try:
        steady = children(read_until, ring.reader(1), n)
        victim_reader = ring.reader(0)
        writer = children(write_numbered, ring, n, 3)
        rnd = random.Random(4)
        kills = 0
        for _ in range(8):
            def resume_and_read(r: Ring):
                return read_until(r.reader(0, start="resume"), n)
            victim = children(resume_and_read, ring)
            time.sleep(rnd.uniform(0.01, 0.08))
            victim.kill(signal.SIGKILL)
            status = victim.reap()
            kills += os.WIFSIGNALED(status)
        # the writer finished regardless, the steady reader got everything, and a reader that
        # resumes where the killed ones left off still sees intact records and exact losses
        assert writer.join()["published"] == n
        got = steady.join()
        assert got["delivered"] + got["lost"] == n
        start = ring.statistics()["readers"][0]["cursor"]
        final = children(read_until, ring.reader(0, start="resume"), n).join()
        assert final["cursor"] == n
        assert final["delivered"] + final["lost"] == n - start
        assert kills >= 1 or start == n
        del victim_reader
    finally:
        ring.close()


def test_a_writer_killed_mid_record_leaves_nothing_half_delivered(ring_name, children):
    """Deterministic: the writer claims, writes one slot whole and one in part, and is SIGKILLed
    at that instant; a new writer (forked from the supervisor's stale Ring object) continues."""
    ring = Ring.create(ring_name, slots=64, slot_size=128, max_readers=1)
    maxp = ring.max_payload
    try:
        reader = children(read_until, ring.reader(0), None)

        def die_mid_record(r: Ring):
            r.publish_many([make_record(s, maxp) for s in range(10)])
            r._claim(13)
            r._fill(10, make_record(10, maxp))
            off = r._slots_off + 11 * r.slot_size
            _HDR.pack_into(r._mm, off, 11, record_size(11, maxp))   # header says whole...
            r._mm[off + SLOT_HEADER:off + SLOT_HEADER + 5] = b"trunc"    # ...5 bytes are there
            os.kill(os.getpid(), signal.SIGKILL)

        dead = children(die_mid_record, ring)
        status = dead.reap()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        stats = ring.statistics()
        assert stats["published"] == 10 and stats["claimed"] >= 13

        def carry_on(r: Ring):
            first = r.publish(make_record(10, maxp))
            write_numbered(r, 40, 5)
            r.publish(END)
            return {"first": first}
        assert children(carry_on, ring).join() == {"first": 10}
        assert reader.join() == {"delivered": 40, "lost": 0, "end": 40}
    finally:
        ring.close()


def test_writers_sigkilled_at_random_never_deliver_a_torn_record(ring_name, children):
    ring = Ring.create(ring_name, slots=128, slot_size=256, max_readers=3)
    try:
        readers = [children(read_until, ring.reader(i), None, naps=0.02 * i, block=i == 2)
                   for i in range(3)]     # reader 2 by poll_block
        rnd = random.Random(6)
        mid_write = 0
        for round_ in range(6):
            w = children(write_forever, ring, round_)
            time.sleep(rnd.uniform(0.02, 0.1))
            w.kill(signal.SIGKILL)
            assert os.WIFSIGNALED(w.reap())
            st = ring.statistics()
            assert st["published"] <= st["claimed"]
            # a slot written past the published cursor = killed between fill and publish
            seq = st["published"]
            off = ring._slots_off + (seq & (ring.capacity - 1)) * ring.slot_size
            mid_write += _HDR.unpack_from(ring._mm, off)[0] == seq
        end = ring.publish(END)          # the parent's pre-fork Ring object carries on
        for kid in readers:
            got = kid.join()
            assert got["end"] == end
            assert got["delivered"] + got["lost"] == end
        print(f"writer killed between fill and publish in {mid_write} of 6 rounds")
    finally:
        ring.close()
