"""A ring's readers: `RingReader.poll` (a list of records), `poll_block` (one copy, many records).

Each reader keeps its own cursor (mirrored into its line of the segment) and reads at its own
pace; the protocol (acquire load of PUBLISHED, copy, RMW re-check of CLAIMED) is described in
ring.py.  `poll` hands out one `bytes` per record.  `poll_block` copies the contiguous run of
slots in one memcpy, checks every slot's seq and length with two strided reads of that copy
(no per-record Python), and hands out a `Block`: a view of the copied slots that a reader
decodes only as far as it needs (`struct.unpack_from` at `block.offset(i)`, or `matching` to
find the records whose bytes at a fixed offset equal a key, by `bytes.find` over the block).
A block never wraps past the last slot: the next poll continues from slot 0.

Why a copy and not a view of the ring itself: the writer never waits, so a slot may be
overwritten at any moment; only bytes copied *before* the re-check of CLAIMED are proved
intact.  The copy is one memcpy per block, nothing per record: a whole poll_block of 256
records of 240 bytes costs 56-59 ns a record here, copy and checks included.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import ring_layout
from .ring_atomics import _Atomic64
from .ring_layout import (_R_CURSOR, _R_LOST, _R_PID, _W_CLAIMED, _W_PUBLISHED,
                          SLOT_HEADER, RingCorrupted, _fork_generation, _reader_line)

# Bound by assignment, not by import, as in ring.py: Python 3.11 compiles `name.method(...)` on
# an imported name without LOAD_METHOD (it takes it for a module), which costs ~50 ns a call.
_HDR = ring_layout._HDR

BULK_SLOT_MAX = 4096   # bytes: `poll` copies slots up to this size whole, larger per record
BULK_MIN = 32          # records: `poll` copies fewer one by one (the bulk path's fixed cost)


@dataclass(slots=True)
class Batch:
    """What one `poll` returns: `records` in order, their first seq, and how many were lost
    (skipped because the writer lapped this reader) just before them."""
    records: list[bytes]
    lost: int
    first_seq: int

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)


class Block:
    """What one `poll_block` returns: `count` records in consecutive slots of one private copy.

    Record i (seq `first_seq + i`) is `lengths[i]` bytes at `offset(i)` of `view` (a memoryview
    of the copy: reading it never touches the ring, and it stays valid after later polls).
    `lost` records were overwritten before this reader got to them; they precede the block."""
    __slots__ = ("view", "count", "first_seq", "lost", "lengths", "slot_size", "_buf", "_base")

    def __init__(self, buf: bytes, base: int, count: int, first_seq: int, lost: int,
                 lengths: list[int], slot_size: int):
        self._buf, self._base = buf, base
        self.view = memoryview(buf)[base:base + count * slot_size]
        self.count, self.first_seq, self.lost = count, first_seq, lost
        self.lengths, self.slot_size = lengths, slot_size

    def __len__(self) -> int:
        return self.count

    def offset(self, i: int) -> int:
        """Byte offset of record i's payload in `view`."""
        return i * self.slot_size + SLOT_HEADER

    def record(self, i: int) -> memoryview:
        """Record i's payload, a zero-copy view (bytes(...) for a copy of its own)."""
        if not 0 <= i < self.count:
            raise IndexError(f"record {i} of a block of {self.count}")
        o = i * self.slot_size + SLOT_HEADER
        return self.view[o:o + self.lengths[i]]

    def __iter__(self):
        v, ss = self.view, self.slot_size
        return (v[o:o + n] for o, n in zip(range(SLOT_HEADER, self.count * ss, ss), self.lengths))

    def records(self) -> list[bytes]:
        """Every record as its own bytes (what `poll` would have returned)."""
        b, ss, base = self._buf, self.slot_size, self._base + SLOT_HEADER
        return [b[o:o + n] for o, n in zip(range(base, base + self.count * ss, ss), self.lengths)]

    def matching(self, offset: int, value: bytes) -> list[int]:
        """Indexes of the records whose bytes [offset, offset + len(value)) equal `value`,
        found by `bytes.find` over the whole block: a reader that keeps one pool in eight
        looks at one record in eight."""
        if offset < 0 or not value:
            raise ValueError("matching: offset must be >= 0 and value non-empty")
        buf, ss, base, lengths = self._buf, self.slot_size, self._base, self.lengths
        want = SLOT_HEADER + offset
        stop = base + self.count * ss
        need = offset + len(value)
        find = buf.find
        out = []
        pos = find(value, base + want, stop)
        while pos != -1:
            i, r = divmod(pos - base, ss)
            if r == want:
                if need <= lengths[i]:
                    out.append(i)
                nxt = base + (i + 1) * ss + want
            else:   # elsewhere in a slot: on to the next place a match can start
                nxt = base + (i + (r > want)) * ss + want
            if nxt >= stop:
                break
            pos = find(value, nxt, stop)
        return out

    def __repr__(self) -> str:
        return f"<Block first_seq={self.first_seq} count={self.count} lost={self.lost}>"


class RingReader:
    """One reader's view of a ring: a cursor (mirrored into the segment) and `poll`."""

    def __init__(self, ring, index: int, start: str):
        self.ring = ring
        self.index = index
        self._line = _reader_line(index)
        w = ring._w
        published = w[_W_PUBLISHED]
        if start == "latest":
            cursor = published
        elif start == "oldest":
            cursor = max(0, w[_W_CLAIMED] - ring.capacity)
        else:
            cursor = min(w[self._line + _R_CURSOR], published)
        self._cursor = cursor
        self._generation = _fork_generation[0]
        w[self._line + _R_CURSOR] = cursor
        w[self._line + _R_PID] = os.getpid()
        # words of our own: their scratch buffers make them single-thread objects
        self._atomics = (_Atomic64(ring._mm, _W_PUBLISHED * 8), _Atomic64(ring._mm, _W_CLAIMED * 8))
        self._load_published = self._atomics[0].load_acquire
        self._touch_claim = self._atomics[1].touch

    def _close(self) -> None:
        self._load_published = self._touch_claim = None
        for a in self._atomics:
            a.release()

    @property
    def cursor(self) -> int:
        """Seq of the next record this reader will be given."""
        return self._cursor

    def pending(self) -> int:
        """How many records were published past the cursor (a plain load: cheap, a hint; more
        than the capacity means some will be reported lost)."""
        w = self.ring._w
        if w is None:
            raise ValueError(f"ring {self.ring.name!r} is closed in this process")
        return w[_W_PUBLISHED] - self._cursor

    def poll(self, max_records: int = 256, *, commit: bool = True) -> Batch:
        """Take up to `max_records` records; never blocks.  `lost` counts records that were
        overwritten before this reader got to them (they precede `records`).
        commit=False leaves the cursor stored in the segment where it was until `commit()`:
        a reader that dies before it has acted on the records gets them again after a restart
        (start="resume"): at-least-once instead of at-most-once.
        At least `BULK_MIN` records in slots of at most `BULK_SLOT_MAX` bytes are copied in one
        piece (two at the wrap) and checked as `poll_block` does; fewer (a role's switch, where
        the fixed cost of that counts) or larger ones record by record, inline."""
        load = self._load_published
        if load is None:
            raise ValueError(f"ring {self.ring.name!r} is closed in this process")
        if max_records < 1:
            raise ValueError(f"max_records={max_records}: must be at least 1")
        r = self._cursor
        published = load()
        if published <= r:
            return Batch([], 0, r)
        ring = self.ring
        w, mm = ring._w, ring._mm
        cap, ss = ring.capacity, ring.slot_size
        start = w[_W_CLAIMED] - cap          # a hint: the re-check below is what counts
        if start < r:
            start = r
        elif start > published:
            start = published
        end = min(published, start + max_records)
        if end - start >= BULK_MIN and ss <= BULK_SLOT_MAX:
            buf, o, first, cursor, lengths = self._take(start, end)
            o += SLOT_HEADER
            records = [buf[o:o + n] for o, n in zip(range(o, o + len(lengths) * ss, ss), lengths)]
        else:
            mask, maxp = ring._mask, ring.max_payload
            base = ring._slots_off
            unpack = _HDR.unpack_from
            records = []
            append = records.append
            bad = None
            for seq in range(start, end):
                off = base + (seq & mask) * ss
                stamp, n = unpack(mm, off)
                if stamp != seq or n > maxp:
                    if bad is None:
                        bad = (seq, stamp, n)
                    n = 0
                off += SLOT_HEADER
                append(mm[off:off + n])
            first = self._touch_claim() - cap     # RMW re-check: below may be overwritten
            if first > start:
                del records[:first - start]
            else:
                first = start
            if bad is not None and bad[0] >= first:
                raise self._corrupted(*bad)
            cursor = end if end > first else first
        lost = cursor - r - len(records)
        self._cursor = cursor
        line = self._line
        if commit:
            w[line + _R_CURSOR] = cursor
        if lost:
            w[line + _R_LOST] += lost
        if self._generation != _fork_generation[0]:
            self._generation = _fork_generation[0]
            w[line + _R_PID] = os.getpid()
        return Batch(records, lost, first if records else cursor)

    def poll_block(self, max_records: int = 256, *, commit: bool = True) -> Block:
        """Like `poll`, but the records come as one `Block`: the run of consecutive slots from
        the cursor (up to `max_records`, and never past the last slot: a wrap is the next
        poll's) copied in one piece.  Costs one copy and two strided header reads per block,
        nothing per record; `lost` and `commit` mean what they mean for `poll`."""
        r, start, published = self._begin(max_records)
        ring = self.ring
        if published <= r:
            return Block(b"", 0, 0, r, 0, [], ring.slot_size)
        end = min(published, start + max_records, start + ring.capacity - (start & ring._mask))
        buf, base, first, cursor, lengths = self._take(start, end)
        count = len(lengths)
        lost = self._advance(r, cursor, count, commit)
        return Block(buf, base, count, first if count else cursor, lost, lengths, ring.slot_size)

    # -- the steps of a poll -------------------------------------------------------------------

    def _begin(self, max_records: int) -> tuple[int, int, int]:
        """(cursor, first seq worth copying, published): the acquire load of PUBLISHED.
        (`poll` does the same inline: a call costs a role's switch ~0.1 µs.)"""
        load = self._load_published
        if load is None:
            raise ValueError(f"ring {self.ring.name!r} is closed in this process")
        if max_records < 1:
            raise ValueError(f"max_records={max_records}: must be at least 1")
        r = self._cursor
        published = load()
        if published <= r:
            return r, r, published
        start = self.ring._w[_W_CLAIMED] - self.ring.capacity   # a hint: _take re-checks
        if start < r:
            start = r
        elif start > published:
            start = published
        return r, start, published

    def _take(self, start: int, end: int) -> tuple[bytes, int, int, int, list[int]]:
        """Copy the slots of seqs start .. end-1 (two pieces if they wrap), re-check the claim
        and check what survives: (copy, byte offset of the first record kept in it, its seq,
        the new cursor, the kept records' lengths)."""
        ring = self.ring
        mm, cap, mask, ss = ring._mm, ring.capacity, ring._mask, ring.slot_size
        at = ring._slots_off + (start & mask) * ss
        n1 = min(end - start, cap - (start & mask))
        buf = mm[at:at + n1 * ss]                         # the one copy
        if n1 < end - start:   # past the last slot: the rest from slot 0 (once a lap)
            buf += mm[ring._slots_off:ring._slots_off + (end - start - n1) * ss]
        first = self._touch_claim() - cap     # RMW re-check: anything below may be overwritten
        if first < start:
            first = start
        cursor = end if end > first else first
        if end <= first:
            return buf, 0, first, cursor, []
        base = (first - start) * ss
        stride = ss // 8
        q = memoryview(buf).cast("Q")
        seqs = q[base // 8::stride].tolist()
        lengths = q.cast("B").cast("I")[base // 4 + 2::stride * 2].tolist()
        q.release()
        if seqs != list(range(first, cursor)) or max(lengths) > ring.max_payload:
            i = next(i for i, (s, n) in enumerate(zip(seqs, lengths))
                     if s != first + i or n > ring.max_payload)
            raise self._corrupted(first + i, seqs[i], lengths[i])
        return buf, base, first, cursor, lengths

    def _corrupted(self, seq: int, stamp: int, n: int) -> RingCorrupted:
        return RingCorrupted(f"ring {self.ring.name!r}: slot for seq {seq} holds seq {stamp} "
                             f"length {n} although the writer had not claimed it (a second "
                             f"writer?)")

    def _advance(self, r: int, cursor: int, delivered: int, commit: bool) -> int:
        """Move the cursor (into the segment if commit), count what was lost; return that."""
        lost = cursor - r - delivered
        self._cursor = cursor
        w, line = self.ring._w, self._line
        if commit:
            w[line + _R_CURSOR] = cursor
        if lost:
            w[line + _R_LOST] += lost
        if self._generation != _fork_generation[0]:
            self._generation = _fork_generation[0]
            w[line + _R_PID] = os.getpid()
        return lost

    def commit(self) -> None:
        """Store the cursor in the segment: everything polled so far has been acted on."""
        w = self.ring._w
        if w is None:
            raise ValueError(f"ring {self.ring.name!r} is closed in this process")
        w[self._line + _R_CURSOR] = self._cursor

    def __repr__(self) -> str:
        return f"<RingReader {self.ring.name}[{self.index}] cursor={self._cursor}>"
