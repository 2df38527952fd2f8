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

Why publication is correctly ordered
------------------------------------
Python promises nothing about the order in which writes into a shared buffer become visible to
another process (vLLM issue 29389); an 8-byte `struct.pack_into` is not even one store (it was
read back torn 259 059 times in 25 M reads on this machine).  So the two words that carry
ordering, P and C, are only ever changed by C11 atomics (the `atomics` package, i.e. patomic's
native `__atomic` operations on the mapped words), with:

* P: store-release by the writer after the slot stores, load-acquire by the reader before it
  touches a slot.  Release/acquire makes every slot store before the release visible to a
  reader whose acquire load sees the new P.  On x86-64 (TSO: stores become visible in program
  order, loads are not reordered with older loads) both are plain MOVs and the hardware already
  orders them; the atomic only stops the compiler from reordering.  On ARM64 (weakly ordered:
  plain stores may become visible in any order) they compile to STLR and LDAR (or a DMB pair),
  which is exactly what is missing from a plain `memoryview` store.
* C: a read-modify-write on both sides.  A reader must never deliver a slot the writer began to
  overwrite while it was copying (a seqlock).  A seqlock written with plain stores needs a
  store-store fence after the writer's "dirty" mark and a load-load fence before the reader's
  re-check; `atomics` offers no stand-alone fence, so both sides use an RMW on C instead (Boehm,
  "Can seqlocks get along with programming language memory models?", 2012): the writer's
  exchange is acquire, the reader's fetch_add(0) is release.  RMWs on C are totally ordered.
  If the reader's RMW comes first, the writer's acquire RMW reads from its release sequence, so
  the reader's copies happen-before the writer's overwrites: it saw old data only.  If the
  writer's comes first, the reader's RMW reads the new C and drops the slot.  On x86-64 these
  are LOCK XCHG / LOCK XADD (full barriers); on ARM64 LDAXR/STLXR loops or SWPAL/LDADDAL.
* The payload and slot header use plain stores and loads (memcpy).  They are never read while
  they may be changing without the C re-check above, and the slot's own seq must equal the
  expected seq, so a torn or half-written slot is never delivered.
* Reader cursors, pids and lost counters are written with plain aligned 8-byte stores through
  `memoryview.cast('Q')` (one MOV/STR: 0 torn reads in 41 M here).  Nothing is published
  through them: the writer never reads them; they serve `statistics()` and `start="resume"`.

Cost (measured on this 2-core machine, loaded): a plain `memoryview.cast('Q')` load is 70 ns;
the `atomics` package's public API costs 4-15 µs per operation (it wraps every call in cffi
buffers), so this module calls patomic's function pointers directly through ctypes with
pre-built arguments: 0.25-0.6 µs per operation.  That is paid per batch (a publish, a chunk of
`publish_many`, a non-empty poll), never per record; `pending()` is a plain load (a hint).

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

import ctypes
import mmap
import os
import struct
import weakref
from dataclasses import dataclass

import posix_ipc

from .wiring import SEGMENT_PREFIX

MAGIC = int.from_bytes(b"SYNRING\x01", "little")
VERSION = 1
LINE = 64                       # bytes: a cache line
SLOT_HEADER = 16                # seq u64, length u32, reserved u32
_HDR = struct.Struct("=QI")     # slot header as read and written (length u32 right after seq)

# word indexes into the header region (u64 words)
_W_MAGIC, _W_VERSION, _W_SLOTS, _W_SLOT_SIZE, _W_MAX_READERS, _W_CLAIM_BLOCK, _W_CREATOR = range(7)
_W_PUBLISHED = 64 // 8
_W_CLAIMED = 128 // 8
_W_WRITER_PID = 192 // 8
_READERS_OFF = 256
_R_CURSOR, _R_PID, _R_LOST = 0, 1, 2   # words within a reader's line

MAX_SLOTS = 1 << 30
MAX_SLOT_SIZE = 1 << 24
MAX_READERS = 4096
NAME_PREFIX = SEGMENT_PREFIX
STARTS = ("latest", "oldest", "resume")

# Incremented in every forked child, so a Ring or reader used across a fork re-records its pid.
_fork_generation = [0]
os.register_at_fork(after_in_child=lambda: _fork_generation.__setitem__(0, _fork_generation[0] + 1))


class RingError(Exception):
    """Something is wrong with a ring segment itself."""


class RingNotFound(RingError, FileNotFoundError):
    """No segment of that name."""


class RingFormatError(RingError, ValueError):
    """A segment exists but is not a ring this code can use (foreign, wrong version, truncated)."""


class RingCorrupted(RingError):
    """A slot the protocol says is intact holds another record: a second writer, or a bug."""


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


# ---------------------------------------------------------------------------------------------
# C11 atomics on 8-byte words of the mapping
# ---------------------------------------------------------------------------------------------

_RELAXED, _ACQUIRE, _RELEASE, _ACQ_REL = 0, 2, 3, 4


def _patomic_ops():
    """patomic's native 8-byte operations as GIL-holding ctypes functions, or None.

    The public `atomics` API costs microseconds per call; the function pointers behind it are
    the same C11 operations for a fraction of that.  They live in a private module, so fall back
    to the public API if its shape ever changes (correct, only slower)."""
    try:
        from atomics._impl.patomic import Patomic
        ops = Patomic.ops(8)

        def wrap(fp):
            addr = ctypes.cast(fp, ctypes.c_void_p).value
            if not addr:
                raise AttributeError("null op")
            # PYFUNCTYPE keeps the GIL: the call is a few instructions, releasing costs more.
            return ctypes.PYFUNCTYPE(None)(addr)

        return (wrap(ops.fp_load), wrap(ops.fp_store), wrap(ops.xchg_ops.fp_exchange),
                wrap(ops.unsigned_ops.fp_fetch_add))
    except (ImportError, AttributeError, TypeError):   # pragma: no cover - depends on atomics
        return None


_OPS = _patomic_ops()


class _Atomic64:
    """One u64 word of a mapping, with the four operations the ring needs.

    Holds a buffer export on the mapping until `release()`.  Results pass through a private
    16-byte scratch buffer, so one object must not be shared between threads."""

    def __init__(self, mm: mmap.mmap, offset: int):
        self._scratch = bytearray(16)
        self._sq = memoryview(self._scratch).cast("Q")
        if _OPS is not None:
            word = ctypes.c_uint64.from_buffer(mm, offset)
            scratch = (ctypes.c_char * 16).from_buffer(self._scratch)
            w, s = ctypes.c_void_p(ctypes.addressof(word)), ctypes.addressof(scratch)
            out, arg = ctypes.c_void_p(s), ctypes.c_void_p(s + 8)
            self._holder = (word, scratch)
            self._args = (w, out, arg)
            self._view = self._ctx = None
        else:   # pragma: no cover - public API fallback
            import atomics
            self._holder = self._args = None
            self._ctx = atomics.atomicview(buffer=memoryview(mm)[offset:offset + 8],
                                           atype=atomics.UINT)
            self._view = self._ctx.__enter__()
        if _OPS is not None:
            load, store, xchg, fadd = _OPS
            w, out, arg = self._args
            acq, rel, acq_rel = ctypes.c_int(_ACQUIRE), ctypes.c_int(_RELEASE), ctypes.c_int(_ACQ_REL)
            sq = self._sq

            def load_acquire() -> int:
                load(w, acq, out)
                return sq[0]

            def store_release(value: int) -> None:
                sq[1] = value
                store(w, arg, rel)

            def exchange(value: int) -> int:
                sq[1] = value
                xchg(w, arg, acq_rel, out)
                return sq[0]

            def touch() -> int:
                sq[1] = 0
                fadd(w, arg, acq_rel, out)
                return sq[0]
        else:   # pragma: no cover
            from atomics import MemoryOrder as MO
            v = self._view

            def load_acquire() -> int:
                return v.load(MO.ACQUIRE)

            def store_release(value: int) -> None:
                v.store(value, MO.RELEASE)

            def exchange(value: int) -> int:
                return v.exchange(value, MO.ACQ_REL)

            def touch() -> int:
                return v.fetch_add(0, MO.ACQ_REL)
        # closures, not methods: one call and no attribute lookups on the hot path
        self.load_acquire, self.store_release, self.exchange, self.touch = (
            load_acquire, store_release, exchange, touch)

    def release(self) -> None:
        self._holder = self._args = None
        self.load_acquire = self.store_release = self.exchange = self.touch = None
        if self._ctx is not None:   # pragma: no cover
            self._ctx.__exit__(None, None, None)
            self._ctx = self._view = None


# ---------------------------------------------------------------------------------------------


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"ring name must be a str, not {type(name).__name__}")
    if not name.startswith(NAME_PREFIX) or len(name) <= len(NAME_PREFIX):
        raise ValueError(f"ring name {name!r} must start with {NAME_PREFIX!r} and the engine name "
                         f"(e.g. '/syn.<engine>.events.arbitrum')")
    if "/" in name[1:] or "\0" in name or len(name) > 250:
        raise ValueError(f"ring name {name!r} must be at most 250 characters with no '/' after "
                         f"the first and no NUL")
    return name


def _layout(slots: int, slot_size: int, max_readers: int) -> tuple[int, int]:
    """(offset of slot 0, total size) for these parameters, validating them."""
    for what, v in (("slots", slots), ("slot_size", slot_size), ("max_readers", max_readers)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    if not 2 <= slots <= MAX_SLOTS or slots & (slots - 1):
        raise ValueError(f"slots={slots}: must be a power of two from 2 to {MAX_SLOTS}")
    if not LINE <= slot_size <= MAX_SLOT_SIZE or slot_size % LINE:
        raise ValueError(f"slot_size={slot_size}: must be a multiple of {LINE} from {LINE} to "
                         f"{MAX_SLOT_SIZE} bytes (each slot carries a {SLOT_HEADER}-byte header)")
    if not 1 <= max_readers <= MAX_READERS:
        raise ValueError(f"max_readers={max_readers}: must be from 1 to {MAX_READERS}")
    slots_off = _READERS_OFF + LINE * max_readers
    return slots_off, slots_off + slots * slot_size


def _claim_block(slots: int) -> int:
    return max(1, min(64, slots // 8))


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
        `claim_block`, so a reader can start on the first chunk while later ones are written."""
        w = self._live()
        items = records if isinstance(records, (list, tuple)) else list(records)
        limit = self.max_payload
        for i, d in enumerate(items):
            if len(d) > limit:
                raise self._oversize(len(d), f" {i} of the batch")
        if self._generation != _fork_generation[0]:
            self._note_writer(w)
        seq = w[_W_PUBLISHED]
        if not items:
            return seq - 1
        mm, base, mask, ss, b = self._mm, self._slots_off + SLOT_HEADER, self._mask, \
            self.slot_size, self.claim_block
        pack, hdr_off = _HDR.pack_into, self._slots_off
        store = self._pub_store
        total = len(items)
        pos = 0
        while pos < total:
            chunk = items[pos:pos + b]
            end = seq + len(chunk)
            if end > w[_W_CLAIMED]:
                self._claim(end)
            for d in chunk:    # _fill's two stores, inlined: a call per record cost +30-40 %
                slot = (seq & mask) * ss
                n = len(d)
                pack(mm, hdr_off + slot, seq, n)
                mm[base + slot:base + slot + n] = d
                seq += 1
            store(seq)
            pos += len(chunk)
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
        line = (_READERS_OFF + LINE * index) // 8
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

    def statistics(self) -> dict:
        """A snapshot for monitoring (plain loads; writes nothing).  Readers whose slot was never
        used are left out; `lag` may exceed the capacity (that reader will lose records)."""
        w = self._live()
        published = w[_W_PUBLISHED]
        readers = []
        for i in range(self.max_readers):
            line = (_READERS_OFF + LINE * i) // 8
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


class RingReader:
    """One reader's view of a ring: a cursor (mirrored into the segment) and `poll`."""

    def __init__(self, ring: Ring, index: int, start: str):
        self.ring = ring
        self.index = index
        self._line = (_READERS_OFF + LINE * index) // 8
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
        (start="resume"): at-least-once instead of at-most-once."""
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
        cap = ring.capacity
        start = w[_W_CLAIMED] - cap          # a hint: the re-check below is what counts
        if start < r:
            start = r
        elif start > published:
            start = published
        end = min(published, start + max_records)
        mask, ss, maxp = ring._mask, ring.slot_size, ring.max_payload
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
        first = self._touch_claim() - cap     # RMW re-check: anything below may be overwritten
        if first > start:
            del records[:first - start]
        else:
            first = start
        if bad is not None and bad[0] >= first:
            raise RingCorrupted(
                f"ring {ring.name!r}: slot for seq {bad[0]} holds seq {bad[1]} length {bad[2]} "
                f"although the writer had not claimed it (a second writer?)")
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

    def commit(self) -> None:
        """Store the cursor in the segment: everything polled so far has been acted on."""
        w = self.ring._w
        if w is None:
            raise ValueError(f"ring {self.ring.name!r} is closed in this process")
        w[self._line + _R_CURSOR] = self._cursor

    def __repr__(self) -> str:
        return f"<RingReader {self.ring.name}[{self.index}] cursor={self._cursor}>"
