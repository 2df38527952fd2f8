"""Task-state staging: where the atomic switch saves a role's state before it handles an event.

Measured here: an LMDB write transaction costs 5 µs when the code is hot, but 60 µs after a 20 ms
pause, and the whole Checkpointer.save 180-230 µs p50 on the switch of a role that was busy with
background work (cold caches, another role holding the writer lock).  That alone would spend the
switch's budget.  So the switch copies the encoded states into this shared-memory page (a few µs,
even cold), handles the event, lowers its priority, and only then commits the same bytes to LMDB.

    /syn.<engine>.staging     per role slot, two buffers (A and B), each:
        u64 time_ns · u64 length · u64 crc32 · payload (orjson of {task: state})
    a save writes the buffer that is *not* the newest, so a role killed mid-copy leaves the
    other one intact; the CRC rejects the torn one.

What this is and is not: the page outlives the role process (the supervisor holds the segment),
so a role killed between staging and the LMDB commit — the window this closes — finds its newer
state here when it restarts, commits it, and resumes from it.  It does not outlive the
supervisor or the machine: durability is LMDB's job, and the commit follows within a second
(role.py: SWITCH_COMMIT_S), between background slices.  Only the role that owns a slot ever
reads or writes it (its later incarnation reads after the earlier one is dead), so no
cross-process ordering is needed.
"""
from __future__ import annotations

import mmap
import struct
import zlib

import posix_ipc

from .wiring import segment_name

HEADER = struct.Struct("=QQQ")
BUFFER_BYTES = 32 * 1024
SLOT_BYTES = 2 * BUFFER_BYTES


class Staging:
    def __init__(self, name: str, shm, mm: mmap.mmap, slots: int):
        self.name, self._shm, self._mm, self.slots = name, shm, mm, slots
        self.view = memoryview(mm)

    @staticmethod
    def segment_name(engine: str) -> str:
        return segment_name(engine, "staging")

    @classmethod
    def create(cls, engine: str, slots: int) -> "Staging":
        name = cls.segment_name(engine)
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=slots * SLOT_BYTES)
        mm = mmap.mmap(shm.fd, slots * SLOT_BYTES)
        shm.close_fd()
        return cls(name, shm, mm, slots)

    def close(self) -> None:
        try:
            self.view.release()
            self._mm.close()
        except (BufferError, ValueError):
            pass

    def _buf(self, slot: int, which: int) -> int:
        return slot * SLOT_BYTES + which * BUFFER_BYTES

    def _read(self, off: int) -> tuple[int, bytes] | None:
        t, n, crc = HEADER.unpack_from(self._mm, off)
        if not t or n > BUFFER_BYTES - HEADER.size:
            return None
        data = bytes(self.view[off + HEADER.size: off + HEADER.size + n])
        return (t, data) if zlib.crc32(data) == crc else None

    def newest(self, slot: int) -> tuple[int, bytes] | None:
        """(time_ns, payload) of the newest intact buffer of `slot`, or None."""
        found = [r for r in (self._read(self._buf(slot, 0)), self._read(self._buf(slot, 1))) if r]
        return max(found) if found else None

    def save(self, slot: int, time_ns: int, payload: bytes) -> bool:
        """Copy `payload` into the older buffer; False if it does not fit (use LMDB directly)."""
        if len(payload) > BUFFER_BYTES - HEADER.size:
            return False
        a = HEADER.unpack_from(self._mm, self._buf(slot, 0))[0]
        b = HEADER.unpack_from(self._mm, self._buf(slot, 1))[0]
        off = self._buf(slot, 0 if a <= b else 1)
        HEADER.pack_into(self._mm, off, 0, 0, 0)            # invalid while being written
        self.view[off + HEADER.size: off + HEADER.size + len(payload)] = payload
        HEADER.pack_into(self._mm, off, time_ns, len(payload), zlib.crc32(payload))
        return True

    def clear(self, slot: int) -> None:
        self.view[slot * SLOT_BYTES: slot * SLOT_BYTES + SLOT_BYTES] = bytes(SLOT_BYTES)
