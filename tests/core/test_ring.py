"""engine/core/ring.py in one process: properties against a model, bad input, life cycle.

The cross-process behaviour (fork, unrelated processes, SIGKILL) is in test_ring_processes.py.
"""
from __future__ import annotations

import mmap
import os
import subprocess
import sys

import posix_ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringhelp import fresh_ring, payload
from engine.core.ring import (SLOT_HEADER, Batch, Ring, RingCorrupted, RingFormatError,
                              RingNotFound)


@pytest.fixture
def ring_name(unique_name):
    """A fresh '/syn.…' name, unlinked after the test whatever happened."""
    name = f"/syn.{unique_name}.ring"
    yield name
    Ring.unlink(name)






# ---------------------------------------------------------------------------------------------
# properties: a model of what every reader must see
# ---------------------------------------------------------------------------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(0, 10_000)),
    st.tuples(st.just("many"), st.lists(st.integers(0, 10_000), max_size=40)),
    st.tuples(st.just("poll"), st.integers(0, 7), st.integers(1, 70)),
    st.tuples(st.just("join"), st.integers(0, 7), st.sampled_from(["latest", "oldest", "resume"])),
), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots_log2=st.integers(1, 7), slot_size=st.sampled_from([64, 128, 256]), program=ops)
def test_every_reader_sees_exactly_the_model(slots_log2, slot_size, program):
    slots = 1 << slots_log2
    with fresh_ring(slots=slots, slot_size=slot_size, max_readers=8) as ring:
        maxp = slot_size - SLOT_HEADER
        block = ring.claim_block
        log: list[bytes] = []                # every record ever published, by seq
        readers: dict[int, object] = {}
        stored: dict[int, int] = {}          # cursor kept in the segment per index
        for op in program:
            if op[0] == "publish":
                data = payload(len(log), op[1] % (maxp + 1))
                assert ring.publish(data) == len(log)
                log.append(data)
            elif op[0] == "many":
                batch = [payload(len(log) + i, n % (maxp + 1)) for i, n in enumerate(op[1])]
                assert ring.publish_many(iter(batch)) == len(log) + len(batch) - 1
                log.extend(batch)
            elif op[0] == "join":
                _, i, start = op
                claimed = ring.statistics()["claimed"]
                readers[i] = ring.reader(i, start=start)
                expect = {"latest": len(log), "oldest": max(0, claimed - slots),
                          "resume": stored.get(i, 0)}[start]
                assert readers[i].cursor == expect
                stored[i] = expect
            else:
                _, i, most = op
                if i not in readers:
                    continue
                rd = readers[i]
                before = rd.cursor
                assert rd.pending() == len(log) - before
                claimed = ring.statistics()["claimed"]
                b = rd.poll(most)
                # the claim runs ahead of publication by less than two blocks
                assert len(log) <= claimed <= len(log) + 2 * block
                start = min(max(before, claimed - slots), len(log))
                end = min(len(log), start + most)
                assert b.lost == start - before
                assert b.records == log[start:end]
                assert b.first_seq == (start if b.records else max(end, start))
                assert rd.cursor == before + b.lost + len(b.records)
                if len(log) - before <= slots - 2 * block:
                    assert b.lost == 0, "a reader inside the lossless window lost records"
                stored[i] = rd.cursor
        stats = ring.statistics()
        assert stats["published"] == len(log)
        for r in stats["readers"]:
            assert r["cursor"] == stored[r["index"]]
            assert r["pid"] == os.getpid()
            assert r["lag"] == len(log) - r["cursor"]


@settings(max_examples=60, deadline=None)
@given(slots_log2=st.integers(1, 6), laps=st.integers(0, 5), extra=st.integers(0, 63),
       sizes=st.lists(st.integers(0, 48), min_size=1, max_size=16))
def test_a_lapped_reader_learns_exactly_how_many_it_lost(slots_log2, laps, extra, sizes):
    slots = 1 << slots_log2
    with fresh_ring(slots=slots, slot_size=64, max_readers=2) as ring:
        rd = ring.reader(0, start="latest")
        n = laps * slots + extra
        ring.publish_many(payload(s, sizes[s % len(sizes)]) for s in range(n))
        got, lost = [], 0
        while rd.cursor < n:
            b = rd.poll(7)
            if b.records:
                assert b.first_seq == rd.cursor - len(b.records)
            got.extend(range(b.first_seq, b.first_seq + len(b.records)))
            lost += b.lost
            for k, rec in enumerate(b.records):
                assert rec == payload(b.first_seq + k, sizes[(b.first_seq + k) % len(sizes)])
        # what is intact is the tail after the claim, and all of it is delivered
        claimed = ring.statistics()["claimed"]
        oldest = max(0, claimed - slots)
        assert got == list(range(oldest, n))
        assert lost == oldest
        assert ring.statistics()["readers"][0]["lost"] == oldest


# ---------------------------------------------------------------------------------------------
# plain behaviour
# ---------------------------------------------------------------------------------------------

def test_publish_poll_round_trip_and_sequence_numbers(ring_name):
    with Ring.create(ring_name, slots=16, slot_size=128) as ring:
        rd = ring.reader(0)
        assert ring.publish(b"") == 0
        assert ring.publish(bytearray(b"abc")) == 1
        assert ring.publish(memoryview(b"x" * 112)) == 2
        assert ring.publish_many([]) == 2
        assert ring.publish_many([b"d", b"e"]) == 4
        b = rd.poll()
        assert isinstance(b, Batch) and b.records == [b"", b"abc", b"x" * 112, b"d", b"e"]
        assert (b.lost, b.first_seq, len(b), rd.cursor, rd.pending()) == (0, 0, 5, 5, 0)
        assert rd.poll() == Batch([], 0, 5)


def test_readers_are_independent_and_start_where_asked(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64, max_readers=3) as ring:
        ring.publish_many([b"a", b"b", b"c"])
        latest, oldest = ring.reader(0), ring.reader(1, start="oldest")
        ring.publish(b"d")
        assert latest.poll().records == [b"d"]
        assert oldest.poll(2).records == [b"a", b"b"]
        resumed = ring.reader(1, start="resume")
        assert resumed.poll().records == [b"c", b"d"]
        stats = ring.statistics()
        assert [(r["index"], r["cursor"], r["lag"]) for r in stats["readers"]] == [(0, 4, 0), (1, 4, 0)]
        assert (stats["capacity"], stats["slot_size"], stats["published"]) == (8, 64, 4)


def test_a_writer_after_a_lost_writer_continues_from_the_published_cursor(ring_name):
    """A second Ring object (a new writer process would attach the same way) continues."""
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many([b"1", b"2"])
        with Ring.attach(ring_name) as second:
            assert second.publish(b"3") == 2
        assert ring.publish(b"4") == 3
        assert rd.poll().records == [b"1", b"2", b"3", b"4"]


def test_a_half_written_slot_is_never_delivered(ring_name):
    """The state a writer killed mid-record leaves: claimed, filled in part, not published."""
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many([b"a", b"b"])
        ring._claim(3)
        ring._fill(2, b"half-written")
        assert rd.poll().records == [b"a", b"b"]
        assert rd.poll() == Batch([], 0, 2)
        assert ring.publish(b"c") == 2
        assert rd.poll().records == [b"c"]


def test_a_slot_holding_the_wrong_record_is_reported_not_delivered(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0, start="oldest")
        ring.publish_many([b"a", b"b", b"c"])
        ring._fill(9, b"from a second writer")    # seq 9 lands in slot 1, over seq 1
        with pytest.raises(RingCorrupted, match="seq 1 holds seq 9"):
            rd.poll()


def test_bad_sizes_and_parameters_are_refused_with_what_is_wrong(ring_name):
    with pytest.raises(ValueError, match="slots=12: must be a power of two"):
        Ring.create(ring_name, slots=12, slot_size=64)
    with pytest.raises(ValueError, match="slots=1"):
        Ring.create(ring_name, slots=1, slot_size=64)
    with pytest.raises(ValueError, match="slot_size=100: must be a multiple of 64"):
        Ring.create(ring_name, slots=8, slot_size=100)
    with pytest.raises(ValueError, match="max_readers=0"):
        Ring.create(ring_name, slots=8, slot_size=64, max_readers=0)
    with pytest.raises(TypeError, match="slots must be an int"):
        Ring.create(ring_name, slots=8.0, slot_size=64)
    with pytest.raises(ValueError, match="must start with '/syn.'"):
        Ring.create("/other.ring", slots=8, slot_size=64)
    with pytest.raises(ValueError, match="no '/' after the first"):
        Ring.create("/syn.a/b", slots=8, slot_size=64)
    assert not os.path.exists("/dev/shm" + ring_name)
    with Ring.create(ring_name, slots=8, slot_size=128, max_readers=2) as ring:
        with pytest.raises(FileExistsError, match="already exists"):
            Ring.create(ring_name, slots=8, slot_size=64)
        with pytest.raises(ValueError, match="113 bytes.*at most 112 bytes.*slot_size 128"):
            ring.publish(b"x" * 113)
        with pytest.raises(ValueError, match="record 1 of the batch of 200 bytes"):
            ring.publish_many([b"ok", b"y" * 200])
        assert ring.published == 0, "a batch with an oversize record writes nothing"
        with pytest.raises(ValueError, match="reader index 2 out of range.*max_readers=2"):
            ring.reader(2)
        with pytest.raises(ValueError, match="reader index -1"):
            ring.reader(-1)
        with pytest.raises(ValueError, match="start='newest'"):
            ring.reader(0, start="newest")
        with pytest.raises(ValueError, match="max_records=0"):
            ring.reader(0).poll(0)


def test_attaching_to_a_missing_or_foreign_segment_says_so(ring_name):
    with pytest.raises(RingNotFound, match="no ring named") as e:
        Ring.attach(ring_name)
    assert isinstance(e.value, FileNotFoundError)
    shm = posix_ipc.SharedMemory(ring_name, posix_ipc.O_CREX, size=4096)
    try:
        with mmap.mmap(shm.fd, 4096) as m:
            m[:8] = b"NOTARING"
        with pytest.raises(RingFormatError, match="is not a syndicate ring"):
            Ring.attach(ring_name)
    finally:
        shm.close_fd()
        shm.unlink()
    shm = posix_ipc.SharedMemory(ring_name, posix_ipc.O_CREX, size=16)
    shm.close_fd()
    with pytest.raises(RingFormatError, match="too small"):
        Ring.attach(ring_name)
    assert Ring.unlink(ring_name) is True
    assert Ring.unlink(ring_name) is False


def test_a_closed_ring_refuses_politely(ring_name):
    ring = Ring.create(ring_name, slots=8, slot_size=64)
    rd = ring.reader(0)
    ring.close()
    ring.close()
    assert ring.closed
    with pytest.raises(ValueError, match="closed"):
        ring.publish(b"x")
    with pytest.raises(ValueError, match="closed"):
        rd.poll()
    with pytest.raises(ValueError, match="closed"):
        rd.pending()


def test_an_unrelated_process_attaches_reads_and_monitors(ring_name):
    with Ring.create(ring_name, slots=16, slot_size=64, max_readers=4) as ring:
        ring.reader(0)
        ring.publish_many([b"one", b"two", b"three"])
        code = (
            "import sys, orjson\n"
            "from engine.core.ring import Ring\n"
            "r = Ring.attach(sys.argv[1])\n"
            "b = r.reader(3, start='oldest').poll()\n"
            "s = r.statistics()\n"
            "print(orjson.dumps({'records': [x.decode() for x in b.records], 'stats': s}).decode())\n"
            "r.close()\n")
        out = subprocess.run([sys.executable, "-c", code, ring_name], capture_output=True,
                             text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(
                                 os.path.dirname(os.path.abspath(__file__)))))
        assert out.returncode == 0, out.stderr
        import orjson
        doc = orjson.loads(out.stdout)
        assert doc["records"] == ["one", "two", "three"]
        assert doc["stats"]["published"] == 3
        assert [r["index"] for r in doc["stats"]["readers"]] == [0, 3]
        assert doc["stats"]["readers"][1]["cursor"] == 3


def test_a_reserved_reader_resumes_from_the_reservation(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64, max_readers=2) as ring:
        ring.publish_many([b"old1", b"old2"])
        assert ring.reserve_reader(0) is True          # before the reader exists
        ring.publish(b"new")                            # published before it starts
        assert ring.reserve_reader(0) is False         # already claimed: left as it is
        assert ring.reader(0, start="resume").poll().records == [b"new"]
        with pytest.raises(ValueError, match="out of range"):
            ring.reserve_reader(2)


def test_peek_reads_back_what_is_still_in_the_ring(ring_name):
    ring = Ring.create(ring_name, slots=4, slot_size=64)
    try:
        assert ring.peek(0) is None and ring.peek(-1) is None
        for i in range(6):
            ring.publish(b"r%d" % i)
        assert [ring.peek(s) for s in range(7)] == [None, None, b"r2", b"r3", b"r4", b"r5", None]
        again = Ring.attach(ring_name)     # a restarted writer finds its last record
        try:
            assert again.peek(again.published - 1) == b"r5"
        finally:
            again.close()
    finally:
        ring.close()
