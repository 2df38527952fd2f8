"""The ring segment's layout: header words, reader lines, slots, and the checks on them.

Shared by the writer (ring.py) and the readers (ring_reader.py); the picture of the segment
and the protocol are in ring.py's docstring.  Every header word is a native-endian u64.
"""
from __future__ import annotations

import os
import struct

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


def _reader_line(index: int) -> int:
    """Word index of reader `index`'s line."""
    return (_READERS_OFF + LINE * index) // 8
