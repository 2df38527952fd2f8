"""Binary ring records: a 16-byte header the engine core reads, a body only the kind reads.

    byte  0      1        2 … 7      8 … 15
          tag    version  reserved   t_written: u64 little-endian, CLOCK_MONOTONIC ns
          └─ any byte but b"{" (0x7B): a record starting with "{" is JSON (orjson)

The core stays chain-agnostic: `EventPublisher.publish_encoded` stamps `t_written` into this
header (or appends it to a JSON object) without decoding anything, and a role hands a record to
its kind's decoder for the tag (`RoleKind.decoders`).  What follows the header is the
codec's business (engine/chain/records.py for pool updates).
"""
from __future__ import annotations

import struct

import orjson

JSON_FIRST = 0x7B            # b"{"
HEADER = struct.Struct("<BB6xQ")
T_WRITTEN = struct.Struct("<Q")
T_WRITTEN_OFFSET = 8
HEADER_SIZE = HEADER.size     # 16


def stamped(record, t_written: int):
    """`record` (bytes-like, JSON object or tagged binary) with `t_written` set.

    A binary record is stamped in place when it is a bytearray (no copy), else copied once; a
    JSON object gets `,"t_written":N` before its closing brace (it must not carry one already)."""
    if not record:
        raise ValueError("empty record: nothing to stamp")
    if record[0] == JSON_FIRST:
        body = bytes(record).rstrip()
        if not body.endswith(b"}"):
            raise ValueError("JSON record is not an object: cannot stamp t_written")
        sep = b"" if body.endswith(b"{}") else b","
        return body[:-1] + sep + b'"t_written":%d}' % t_written
    if len(record) < HEADER_SIZE:
        raise ValueError(f"binary record of {len(record)} bytes: shorter than the "
                         f"{HEADER_SIZE}-byte header (engine/core/frame.py)")
    buf = record if isinstance(record, bytearray) else bytearray(record)
    T_WRITTEN.pack_into(buf, T_WRITTEN_OFFSET, t_written)
    return buf


def t_written(record) -> int:
    """The stamp of a binary record (0: never published)."""
    return T_WRITTEN.unpack_from(record, T_WRITTEN_OFFSET)[0]


def decode(raw, decoders: dict, owner: str = "this role kind") -> dict:
    """A ring record as a dict: JSON by orjson, a tagged binary record by `decoders[tag]`
    ({tag byte: decoder(bytes) -> dict}, a RoleKind's `decoders`).  ValueError (orjson's
    JSONDecodeError is one) when neither can read it: a role counts the record as lost."""
    if raw[:1] == b"{":
        return orjson.loads(raw)
    dec = decoders.get(raw[0]) if raw else None
    if dec is None:
        raise ValueError(f"record with tag {raw[:1]!r}: {owner} has no decoder for it")
    return dec(raw)
