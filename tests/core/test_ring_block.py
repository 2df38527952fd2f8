"""RingReader.poll_block and the Block it returns, and publish_many's one-call chunk path:
against a model, at the wrap, when overrun (before and during the copy), when corrupted.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.ring import SLOT_HEADER, Block, Ring, RingCorrupted
from ringhelp import fresh_ring, payload


@pytest.fixture
def ring_name(unique_name):
    name = f"/syn.{unique_name}.block"
    yield name
    Ring.unlink(name)






ops = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.integers(0, 10_000)),
    st.tuples(st.just("many"), st.lists(st.integers(0, 10_000), max_size=40),
              st.sampled_from([bytes, bytearray, memoryview])),
    st.tuples(st.just("block"), st.integers(1, 70), st.booleans()),
), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slots_log2=st.integers(1, 6), slot_size=st.sampled_from([64, 256, 512]), program=ops)
def test_poll_block_sees_exactly_the_model(slots_log2, slot_size, program):
    slots = 1 << slots_log2
    with fresh_ring(slots=slots, slot_size=slot_size, max_readers=2) as ring:
        maxp = slot_size - SLOT_HEADER
        rd = ring.reader(0, start="oldest")
        log: list[bytes] = []
        stored = 0                   # the cursor kept in the segment
        for op in program:
            if op[0] == "publish":
                data = payload(len(log), op[1] % (maxp + 1))
                assert ring.publish(data) == len(log)
                log.append(data)
            elif op[0] == "many":
                batch = [payload(len(log) + i, n % (maxp + 1)) for i, n in enumerate(op[1])]
                ring.publish_many([op[2](d) if op[2] is not bytes else d for d in batch])
                log.extend(batch)
            else:
                _, most, commit = op
                before = rd.cursor
                claimed = ring.statistics()["claimed"]
                b = rd.poll_block(most, commit=commit)
                start = min(max(before, claimed - slots), len(log))
                end = min(len(log), start + most, start + slots - start % slots)  # no wrap
                assert b.lost == start - before
                assert b.records() == log[start:end]
                assert [bytes(r) for r in b] == log[start:end]
                assert b.lengths == [len(r) for r in log[start:end]]
                assert len(b) == end - start
                assert b.first_seq == (start if len(b) else max(end, start))
                assert rd.cursor == before + b.lost + len(b)
                if commit and rd.cursor != before:   # an empty poll writes nothing
                    stored = rd.cursor
                assert ring.statistics()["readers"][0]["cursor"] == stored


def test_a_block_stops_at_the_last_slot_and_the_next_starts_at_slot_0(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many([payload(s, 10) for s in range(6)])
        assert len(rd.poll_block()) == 6
        ring.publish_many([payload(s, 10) for s in range(6, 11)])   # slots 6, 7, 0, 1, 2
        b = rd.poll_block()
        assert (b.first_seq, len(b), b.lost) == (6, 2, 0)
        assert b.records() == [payload(6, 10), payload(7, 10)]
        b = rd.poll_block()
        assert (b.first_seq, len(b), b.lost) == (8, 3, 0)
        assert b.records() == [payload(s, 10) for s in (8, 9, 10)]
        assert len(rd.poll_block()) == 0 and rd.cursor == 11


def test_a_lapped_block_reader_is_told_what_it_lost(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many([payload(s, 20) for s in range(30)])
        got, lost = [], 0
        while rd.cursor < 30:
            b = rd.poll_block(5)
            lost += b.lost
            got.extend(range(b.first_seq, b.first_seq + len(b)))
            assert b.records() == [payload(s, 20) for s in range(b.first_seq,
                                                                 b.first_seq + len(b))]
        oldest = ring.statistics()["claimed"] - 8
        assert got == list(range(oldest, 30)) and lost == oldest
        assert ring.statistics()["readers"][0]["lost"] == oldest


def test_records_overwritten_while_the_block_was_copied_are_dropped_and_counted(ring_name):
    """The writer claims slots between the reader's copy and its re-check of the claim: the
    records in those slots may be torn in the copy, so they are lost, not delivered."""
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0, start="oldest")
        ring.publish_many([payload(s, 30) for s in range(8)])     # claim is 8: nothing lapped
        touch = rd._touch_claim

        def writer_claims_meanwhile():
            ring._claim(11)            # a writer began on seqs 8..10: slots 0..2 (block of 1)
            return touch()
        rd._touch_claim = writer_claims_meanwhile
        b = rd.poll_block()
        assert (b.first_seq, b.lost) == (3, 3)
        assert b.records() == [payload(s, 30) for s in range(3, 8)]
        assert rd.cursor == 8 and ring.statistics()["readers"][0]["lost"] == 3


def test_a_block_slot_holding_the_wrong_record_is_reported(ring_name):
    with Ring.create(ring_name, slots=8, slot_size=64) as ring:
        rd = ring.reader(0, start="oldest")
        ring.publish_many([b"a", b"b", b"c"])
        ring._fill(9, b"from a second writer")    # seq 9 lands in slot 1, over seq 1
        with pytest.raises(RingCorrupted, match="seq 1 holds seq 9"):
            rd.poll_block()


def test_fields_are_read_in_place_and_matching_finds_only_the_keyed_records(ring_name):
    rec = struct.Struct("<Q20sI")     # a fixed layout: stamp, key at offset 8, value
    keys = [bytes([k]) * 20 for k in range(4)]
    recs = [rec.pack(s, keys[s % 4], s * 10) for s in range(40)]
    decoy = rec.pack(99, b"\x00" * 20, 0)[:4] + keys[1] + b"pad!"   # key at offset 4: no match
    short = keys[1][:10]                                             # too short to hold a key
    with Ring.create(ring_name, slots=64, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many(recs + [decoy, short])
        b = rd.poll_block(256)
        assert isinstance(b, Block) and len(b) == 42
        assert [rec.unpack_from(b.view, b.offset(i))[2] for i in range(40)] == \
            [s * 10 for s in range(40)]
        assert b.matching(8, keys[1]) == [s for s in range(40) if s % 4 == 1]
        assert b.matching(8, b"\xee" * 20) == []
        assert bytes(b.record(40)) == decoy and bytes(b.record(41)) == short
        with pytest.raises(IndexError):
            b.record(42)
        with pytest.raises(ValueError):
            b.matching(0, b"")


def test_a_block_view_stays_valid_after_later_polls_overwrite_the_slots(ring_name):
    with Ring.create(ring_name, slots=4, slot_size=64) as ring:
        rd = ring.reader(0)
        ring.publish_many([payload(s, 16) for s in range(4)])
        b = rd.poll_block()
        ring.publish_many([payload(s, 16) for s in range(4, 12)])   # every slot twice over
        assert b.records() == [payload(s, 16) for s in range(4)]
        assert len(rd.poll_block()) + rd.poll_block().lost >= 0     # the reader carries on


def test_publish_many_writes_every_kind_of_record_across_the_wrap(ring_name):
    """Chunks written in one call (near-full bytes), by the loop (short records, memoryviews,
    a chunk that wraps), and a mix: what a reader gets back is what was published."""
    with Ring.create(ring_name, slots=64, slot_size=512) as ring:   # claim_block 8
        rd = ring.reader(0)
        log = []
        for rnd in range(12):
            sizes = [496, 496 - 128, 10, 400, 0, 496] * 3
            batch = [payload(len(log) + i, n) for i, n in enumerate(sizes)]
            kind = (bytes, bytearray, memoryview)[rnd % 3]
            ring.publish_many([kind(d) for d in batch])
            log.extend(batch)
            got = rd.poll(256).records
            assert got == log[-len(batch):]
        assert rd.cursor == len(log) and ring.published == len(log)


def test_slowest_cursor_is_the_lowest_cursor_of_the_slots_in_use(ring_name):
    with Ring.create(ring_name, slots=16, slot_size=64, max_readers=4) as ring:
        assert ring.slowest_cursor() is None
        ring.publish_many([b"x"] * 5)
        a = ring.reader(1)               # at 5
        assert ring.slowest_cursor() == 5
        b = ring.reader(3, start="oldest")   # at 0
        ring.publish_many([b"y"] * 3)
        assert ring.slowest_cursor() == 0
        b.poll_block(4)
        assert ring.slowest_cursor() == 4
        a.poll(), b.poll()
        assert ring.slowest_cursor() == 8 == min(r["cursor"] for r in ring.statistics()["readers"])


@pytest.mark.parametrize("slot_size", [64, 8192])   # poll's bulk copy, and per record (> 4096)
def test_poll_at_either_slot_size_across_the_wrap_lapped_and_corrupted(ring_name, slot_size):
    with Ring.create(ring_name, slots=8, slot_size=slot_size) as ring:
        rd = ring.reader(0)
        ring.publish_many([payload(s, 40) for s in range(6)])
        assert rd.poll(4).records == [payload(s, 40) for s in range(4)]
        ring.publish_many([payload(s, 40) for s in range(6, 11)])
        b = rd.poll(256)                          # seqs 4..10: slots 4..7 then 0..2
        assert (b.first_seq, b.lost, b.records) == (4, 0, [payload(s, 40) for s in range(4, 11)])
        ring.publish_many([payload(s, 40) for s in range(11, 40)])
        b = rd.poll(256)
        oldest = ring.statistics()["claimed"] - 8
        assert (b.first_seq, b.lost) == (oldest, oldest - 11)
        assert b.records == [payload(s, 40) for s in range(oldest, 40)]
        touch = rd._touch_claim
        ring.publish_many([payload(s, 40) for s in range(40, 44)])

        def writer_claims_meanwhile():
            ring._claim(50)            # overwriting seqs up to 41 begins during the copy
            return touch()
        rd._touch_claim = writer_claims_meanwhile
        b = rd.poll(256)
        assert (b.first_seq, b.lost, b.records) == (42, 2, [payload(42, 40), payload(43, 40)])
    Ring.unlink(ring_name)
    with Ring.create(ring_name, slots=8, slot_size=slot_size) as ring:
        rd = ring.reader(0, start="oldest")
        ring.publish_many([b"a", b"b", b"c"])
        ring._fill(9, b"from a second writer")    # seq 9 lands in slot 1, over seq 1
        with pytest.raises(RingCorrupted, match="seq 1 holds seq 9"):
            rd.poll()
