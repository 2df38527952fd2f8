"""C11 atomics on 8-byte words of a ring's mapping: the only stores and loads that order anything.

The ring protocol (ring.py) publishes through two header words, PUBLISHED and CLAIMED; this
module gives each a load-acquire, a store-release, an exchange and a fetch_add(0), as closures
with their ctypes arguments built once.

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
"""
from __future__ import annotations

import ctypes
import mmap

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
