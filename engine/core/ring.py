"""Broadcast rings in POSIX shared memory: one writer, many readers, nobody waits for anybody.

A `Ring` is a Disruptor-style ring of fixed-size slots in one posix_ipc segment.  The writer
publishes length-prefixed byte records; every reader keeps its own cursor (in the segment, on
its own cache line) and reads at its own pace.  The writer never looks at the readers: a dead,
stopped or slow reader cannot wedge it.  A reader that falls more than a lap behind is told
exactly how many records it lost and carries on from the oldest record still intact.

Layout of the segment (every word a native-endian u64; offsets in bytes)::

    0     ┌────────────────────────────────────────────────────────────────┐
          │ magic "SYNRING\\x01" │ version │ slots │ slot_size │ max_readers │
          │ claim_block │ creator pid │ -                                   │  header line
    64    ├────────────────────────────────────────────────────────────────┤
          │ PUBLISHED  P: records published = seq of the next record       │  writer line
    128   ├────────────────────────────────────────────────────────────────┤
          │ CLAIMED    C: slots the writer may have begun to overwrite     │  claim line
    192   ├────────────────────────────────────────────────────────────────┤
          │ writer pid (informational)                                     │
    256   ├────────────────────────────────────────────────────────────────┤
          │ reader 0: cursor │ pid │ lost (total) │ -                      │  one 64-byte
    320   │ reader 1: cursor │ pid │ lost (total) │ -                      │  line per
          │ ... max_readers lines                                          │  reader
    S     ├────────────────────────────────────────────────────────────────┤
          │ slot 0: seq u64 │ length u32 │ - u32 │ payload (slot_size-16)   │  slots, each
          │ slot 1: ...                                                    │  slot_size
          │ ... `slots` slots (a power of two); record seq s lives in     │  bytes (a
          │     slot s & (slots - 1)                                       │  multiple of 64)
          └────────────────────────────────────────────────────────────────┘

Writer, per batch of at most `claim_block` records (one record for `publish`)::

    if C < end:  C.exchange(round_up(end, claim_block), acq_rel)   # "I may now overwrite"
    for each record: slot.seq, slot.length, slot.payload = ...     # plain stores (memcpy)
    P.store(end, release)                                          # "these are ready"

Reader `poll`::

    p = P.load(acquire); nothing new -> return at once (no write to shared memory)
    start = max(cursor, C - slots);  copy slots start .. min(p, start + max_records)
    c = C.fetch_add(0, acq_rel)                                     # re-check the claim
    every copied record with seq < c - slots may have been overwritten while we copied:
    drop it and count it as lost; deliver the rest; cursor = end (stored in the segment)

Why that is correctly ordered on x86-64 and ARM64, and what the atomics cost, is in
ring_atomics.py (the C11 operations on P and C); the offsets above are in ring_layout.py, the
readers (`poll`, `poll_block`) in ring_reader.py.

Claims run ahead in blocks of `claim_block` (min(64, slots/8), at least 1) so a single-record
`publish` pays for one RMW in 64.  The price: a reader more than `slots - 2*claim_block` behind
may lose records that were not yet overwritten.  Loss is always counted, never silent.

Failure: a writer killed mid-record leaves P unchanged and C ahead of it; the half-written slot
is never delivered (its seq is past P), the old records it was overwriting are counted as lost,
and a new writer (the supervisor's pre-fork `Ring`, or `Ring.attach` in any process) reads P
from the segment and continues.  A reader killed mid-poll leaves only its own cursor behind.
One writer at a time, and one thread per `RingReader`: the ring does not arbitrate.
"""
from __future__ import annotations

import mmap
import os
import struct
import weakref
from itertools import chain

import posix_ipc

from . import ring_layout
from .ring_atomics import _Atomic64
from .ring_layout import (_R_CURSOR, _R_LOST, _R_PID, _READERS_OFF,
                          _W_CLAIM_BLOCK, _W_CLAIMED, _W_CREATOR, _W_MAGIC, _W_MAX_READERS,
                          _W_PUBLISHED, _W_SLOT_SIZE, _W_SLOTS, _W_VERSION, _W_WRITER_PID, LINE,
                          MAGIC, MAX_READERS, MAX_SLOT_SIZE, MAX_SLOTS, NAME_PREFIX, SLOT_HEADER,
                          STARTS, VERSION, RingCorrupted, RingError, RingFormatError,
                          RingNotFound, _check_name, _claim_block, _fork_generation, _layout,
                          _reader_line)
from .ring_reader import Batch, Block, RingReader

# Bound by assignment, not by import: Python 3.11 compiles `name.method(...)` on an imported name
# without LOAD_METHOD (it takes it for a module), +50-70 ns on every record's header store.
_HDR = ring_layout._HDR

_PAD_MAX = 128      # bytes of zeros publish_many may write after a record to write a chunk at once
_ONE_CALL_MIN = 8   # records: fewer are written one by one (the one call's fixed cost is ~1 µs)

__all__ = ["Ring", "RingReader", "Batch", "Block", "RingError", "RingNotFound",
           "RingFormatError", "RingCorrupted", "SLOT_HEADER", "LINE", "MAGIC", "VERSION",
           "MAX_SLOTS", "MAX_SLOT_SIZE", "MAX_READERS", "NAME_PREFIX", "STARTS"]


class Ring:
    """One ring segment, mapped into this process.  Build with `create` or `attach`.

    The same object works in forked children (the mapping is inherited); `close` unmaps it in
    the calling process only, `unlink` removes the name from the system."""

    def __init__(self, name: str, mm: mmap.mmap, owner: bool):
        # private: use Ring.create / Ring.attach
        self.name = name
        self._mm = mm
        self.owner = owner
        head = memoryview(mm)[:_READERS_OFF].cast("Q")
        try:
            if mm.size() < _READERS_OFF or head[_W_MAGIC] != MAGIC:
                raise RingFormatError(f"shared memory {name!r} is not a syndicate ring "
                                      f"(no ring magic at offset 0)")
            if head[_W_VERSION] != VERSION:
                raise RingFormatError(f"ring {name!r} has layout version {head[_W_VERSION]}, "
                                      f"this code reads version {VERSION}")
            slots, slot_size, max_readers = (head[_W_SLOTS], head[_W_SLOT_SIZE],
                                              head[_W_MAX_READERS])
            try:
                slots_off, size = _layout(slots, slot_size, max_readers)
            except (ValueError, TypeError) as e:
                raise RingFormatError(f"ring {name!r} has a corrupt header: {e}") from None
            if mm.size() < size:
                raise RingFormatError(f"ring {name!r} is {mm.size()} bytes, its header says "
                                      f"{size}: truncated")
            if head[_W_CLAIM_BLOCK] != _claim_block(slots):
                raise RingFormatError(f"ring {name!r} has claim_block {head[_W_CLAIM_BLOCK]}, "
                                      f"expected {_claim_block(slots)}")
        finally:
            head.release()
        self.capacity = slots
        self.slot_size = slot_size
        self.max_readers = max_readers
        self.max_payload = slot_size - SLOT_HEADER
        self.claim_block = _claim_block(slots)
        self._mask = slots - 1
        self._slots_off = slots_off
        self._w = memoryview(mm)[:slots_off].cast("Q")
        self._published = _Atomic64(mm, _W_PUBLISHED * 8)
        self._claimed = _Atomic64(mm, _W_CLAIMED * 8)
        self._pub_store = self._published.store_release
        self._packers: dict[int, struct.Struct] = {}   # publish_many's, by chunk length
        self._generation = -1
        self._readers: weakref.WeakSet[RingReader] = weakref.WeakSet()   # closed with us

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, *, slots: int, slot_size: int, max_readers: int = 16) -> "Ring":
        """Create the segment (fails if the name exists) and map it."""
        _check_name(name)
        slots_off, size = _layout(slots, slot_size, max_readers)
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
        except posix_ipc.ExistentialError:
            raise FileExistsError(f"shared memory {name!r} already exists (a ring left by a "
                                  f"killed engine? Ring.unlink({name!r}) removes it)") from None
        try:
            mm = mmap.mmap(shm.fd, size)
        except BaseException:
            posix_ipc.unlink_shared_memory(name)
            raise
        finally:
            shm.close_fd()
        try:
            head = memoryview(mm)[:_READERS_OFF].cast("Q")
            head[_W_VERSION], head[_W_SLOTS], head[_W_SLOT_SIZE] = VERSION, slots, slot_size
            head[_W_MAX_READERS], head[_W_CLAIM_BLOCK] = max_readers, _claim_block(slots)
            head[_W_CREATOR] = os.getpid()
            head.release()
            magic = _Atomic64(mm, _W_MAGIC * 8)
            magic.store_release(MAGIC)    # last, so an attacher never sees a half-made header
            magic.release()
            return cls(name, mm, owner=True)
        except BaseException:
            mm.close()
            posix_ipc.unlink_shared_memory(name)
            raise

    @classmethod
    def attach(cls, name: str) -> "Ring":
        """Map an existing ring (from any process)."""
        _check_name(name)
        try:
            shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError:
            raise RingNotFound(f"no ring named {name!r} (no such shared memory segment)") from None
        try:
            if shm.size < _READERS_OFF:
                raise RingFormatError(f"shared memory {name!r} is {shm.size} bytes: too small "
                                      f"to be a syndicate ring")
            mm = mmap.mmap(shm.fd, shm.size)
        finally:
            shm.close_fd()
        try:
            return cls(name, mm, owner=False)
        except BaseException:
            mm.close()
            raise

    @staticmethod
    def unlink(name: str) -> bool:
        """Remove the segment's name; True if it existed.  Mappings stay valid until closed."""
        _check_name(name)
        try:
            posix_ipc.unlink_shared_memory(name)
            return True
        except posix_ipc.ExistentialError:
            return False

    def close(self) -> None:
        """Unmap in this process.  Readers of this Ring stop working (ValueError)."""
        if self._mm is None:
            return
        for r in list(self._readers):
            r._close()
        self._readers.clear()
        self._published.release()
        self._claimed.release()
        self._pub_store = None
        self._w.release()
        self._w = None
        self._mm.close()
        self._mm = None

    @property
    def closed(self) -> bool:
        return self._mm is None

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else f"published={self._w[_W_PUBLISHED]}"
        return (f"<Ring {self.name} slots={self.capacity} slot_size={self.slot_size} "
                f"max_readers={self.max_readers} {state}>")

    def _live(self) -> memoryview:
        w = self._w
        if w is None:
            raise ValueError(f"ring {self.name!r} is closed in this process")
        return w

    # -- writer --------------------------------------------------------------------------------

    def _oversize(self, n: int, where: str = "") -> ValueError:
        return ValueError(f"record{where} of {n} bytes does not fit ring {self.name!r}: a slot "
                          f"carries at most {self.max_payload} bytes (slot_size {self.slot_size} "
                          f"minus the {SLOT_HEADER}-byte header)")

    def _claim(self, end: int) -> None:
        """Announce that slots up to seq `end` (exclusive) may now change.  The acquire side of
        this RMW keeps the slot stores that follow from being seen before it."""
        b = self.claim_block
        self._claimed.exchange(-(-end // b) * b)

    def _note_writer(self, w: memoryview) -> None:
        self._generation = _fork_generation[0]
        w[_W_WRITER_PID] = os.getpid()

    def _packer(self, m: int) -> struct.Struct:
        """`m` whole slots as one struct: seq u64, length u32, 4 zero bytes, the payload padded
        with zeros to `max_payload` (what `struct`'s `s` does), m times."""
        p = self._packers[m] = struct.Struct("=" + f"QI4x{self.max_payload}s" * m)
        return p

    def _fill(self, seq: int, data) -> None:
        """Write one record into its slot (no publication): `publish`'s stores, inlined in
        `publish_many`'s loop; tests use it to plant a half-written slot."""
        off = self._slots_off + (seq & self._mask) * self.slot_size
        _HDR.pack_into(self._mm, off, seq, len(data))
        self._mm[off + SLOT_HEADER:off + SLOT_HEADER + len(data)] = data

    def publish(self, data) -> int:
        """Append one record (any bytes-like object) and return its sequence number."""
        w = self._live()
        n = len(data)
        if n > self.max_payload:
            raise self._oversize(n)
        if self._generation != _fork_generation[0]:
            self._note_writer(w)
        seq = w[_W_PUBLISHED]   # our own word: read from the segment, so a new writer continues
        if seq >= w[_W_CLAIMED]:
            self._claim(seq + 1)
        self._fill(seq, data)
        self._pub_store(seq + 1)
        return seq

    def publish_many(self, records) -> int:
        """Append every record; return the seq of the last (published - 1 if none).

        All sizes are checked before anything is written.  Records become visible in chunks of
        `claim_block`, so a reader can start on the first chunk while later ones are written.
        A chunk of at least `_ONE_CALL_MIN` bytes or bytearray records whose slots do not wrap
        and which nearly fill them (at most `_PAD_MAX` bytes short: fixed-layout binary
        records, orjson records near the slot size) is written by one `struct.pack_into`:
        headers, payloads and the zero padding between them in one C call, no Python per
        record."""
        w = self._live()
        items = records if isinstance(records, (list, tuple)) else list(records)
        limit = self.max_payload
        total = len(items)
        if total < _ONE_CALL_MIN:      # a few records (a role's decisions): as lean as it was
            lens = None
            for i, d in enumerate(items):
                if len(d) > limit:
                    raise self._oversize(len(d), f" {i} of the batch")
        else:
            lens = list(map(len, items))
            if max(lens) > limit:
                i = next(i for i, n in enumerate(lens) if n > limit)
                raise self._oversize(lens[i], f" {i} of the batch")
        if self._generation != _fork_generation[0]:
            self._note_writer(w)
        seq = w[_W_PUBLISHED]
        if not items:
            return seq - 1
        mm, base, mask, ss, b = self._mm, self._slots_off + SLOT_HEADER, self._mask, \
            self.slot_size, self.claim_block
        pack, hdr_off = _HDR.pack_into, self._slots_off
        store = self._pub_store
        pos = 0
        while pos < total:
            chunk = items[pos:pos + b]
            m = len(chunk)
            end = seq + m
            if end > w[_W_CLAIMED]:
                self._claim(end)
            if m >= _ONE_CALL_MIN:
                clens, first = lens[pos:pos + b], seq & mask
                if first + m <= self.capacity and limit - min(clens) <= _PAD_MAX:
                    packer = self._packers.get(m) or self._packer(m)
                    try:   # one C call: header, payload and its zero padding for every slot
                        packer.pack_into(mm, hdr_off + first * ss,
                                         *chain.from_iterable(zip(range(seq, end), clens, chunk)))
                        seq = end
                    except struct.error:   # not bytes/bytearray: the loop below rewrites them
                        pass
            if seq != end:
                for d in chunk:    # _fill's two stores, inlined: a call per record cost +30-40 %
                    slot = (seq & mask) * ss
                    n = len(d)
                    pack(mm, hdr_off + slot, seq, n)
                    mm[base + slot:base + slot + n] = d
                    seq += 1
            store(seq)
            pos += m
        return seq - 1

    @property
    def published(self) -> int:
        """Records published so far (= seq of the next one)."""
        return self._live()[_W_PUBLISHED]

    def peek(self, seq: int) -> bytes | None:
        """Record `seq` if it is still in the ring, else None.  For the writer reading back what
        it published (a restarted writer finding where it stopped); not safe against a
        concurrent writer — readers use poll()."""
        w = self._live()
        if not w[_W_PUBLISHED] - self.capacity <= seq < w[_W_PUBLISHED] or seq < 0:
            return None
        off = self._slots_off + (seq & self._mask) * self.slot_size
        stamp, n = _HDR.unpack_from(self._mm, off)
        if stamp != seq or n > self.max_payload:
            return None
        return bytes(self._mm[off + SLOT_HEADER:off + SLOT_HEADER + n])

    # -- readers -------------------------------------------------------------------------------

    def reader(self, index: int, *, start: str = "latest") -> "RingReader":
        """A reader using cursor slot `index` (0 .. max_readers-1).

        start: "latest" = records published from now on; "oldest" = everything still intact in
        the ring; "resume" = from the cursor stored in the segment for this index."""
        self._check_index(index)
        if start not in STARTS:
            raise ValueError(f"start={start!r}: must be one of {', '.join(STARTS)}")
        r = RingReader(self, index, start)
        self._readers.add(r)
        return r

    def reserve_reader(self, index: int) -> bool:
        """Claim cursor slot `index` at the current end of the ring, unless a reader already
        used it; a later reader(index, start="resume") then misses nothing published after
        this call.  Returns whether the slot was free.  (The supervisor reserves every role's
        slot when it wires the rings, before the role exists.)"""
        w = self._check_index(index)
        line = _reader_line(index)
        if w[line + _R_PID]:
            return False
        w[line + _R_CURSOR] = w[_W_PUBLISHED]
        w[line + _R_PID] = os.getpid()
        return True

    def _check_index(self, index: int) -> memoryview:
        w = self._live()
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"reader index must be an int, not {type(index).__name__}")
        if not 0 <= index < self.max_readers:
            raise ValueError(f"reader index {index} out of range: ring {self.name!r} has "
                             f"max_readers={self.max_readers} (indexes 0..{self.max_readers - 1})")
        return w

    # -- monitoring ----------------------------------------------------------------------------

    def slowest_cursor(self) -> int | None:
        """The lowest cursor among the reader slots in use, or None if none is: two strided
        plain loads of the reader lines, no dict per reader (a writer that paces itself, as
        bench ring's does, asks this per chunk; the ring itself never waits for anyone)."""
        w = self._live()
        lo = _READERS_OFF // 8
        hi = lo + LINE // 8 * self.max_readers
        live = [c for c, pid in zip(w[lo + _R_CURSOR:hi:LINE // 8].tolist(),
                                    w[lo + _R_PID:hi:LINE // 8].tolist()) if pid]
        return min(live) if live else None

    def statistics(self) -> dict:
        """A snapshot for monitoring (plain loads; writes nothing).  Readers whose slot was never
        used are left out; `lag` may exceed the capacity (that reader will lose records)."""
        w = self._live()
        published = w[_W_PUBLISHED]
        readers = []
        for i in range(self.max_readers):
            line = _reader_line(i)
            pid = w[line + _R_PID]
            if pid == 0:
                continue
            cursor = w[line + _R_CURSOR]
            readers.append({"index": i, "pid": pid, "cursor": cursor,
                            "lag": max(0, published - cursor), "lost": w[line + _R_LOST]})
        return {"name": self.name, "capacity": self.capacity, "slot_size": self.slot_size,
                "max_payload": self.max_payload, "max_readers": self.max_readers,
                "claim_block": self.claim_block, "published": published,
                "claimed": w[_W_CLAIMED], "writer_pid": w[_W_WRITER_PID],
                "creator_pid": w[_W_CREATOR], "readers": readers}
