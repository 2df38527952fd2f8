"""The pool-update record in a fixed binary layout: the hot record of the `events.<chain>` rings.

The record is the dict of the shared contract (the chain monitor publishes it; the agents read
it), field for field what orjson carries, so `decode(encode(d)) == orjson.loads(orjson.dumps(d))`:

    {"type": "pool", "chain", "block", "block_hash", "tx", "log_index", "pool", "kind",
     "event", "state": {...}, ["delta": {...}], "impact_bps", "interrupt", "reverted",
     "t_origin", ["t_written"]}

Layout (little-endian, 240 bytes: one 256-byte ring slot with its header; engine/core/frame.py
owns the first 16 bytes, so the ring publisher stamps `t_written` without knowing any of this):

    off  size  field                      off  size  field
      0     1  tag 0x50 ("P")              52     8  impact_bps      (i64)
      1     1  version 1                   60     8  t_origin        (u64 ns)
      8     8  t_written (0 = unstamped)   68    32  block_hash
     16     1  chain   (index in CHAINS)  100    32  tx
     17     1  kind    (v2, v3)           132    32  v2 reserve0 | v3 sqrt_price_x96  (u256 BE)
     18     1  event   (index in EVENTS)  164    32  v2 reserve1 | v3 liquidity       (u256 BE)
     19     1  flags   (interrupt 1, reverted 2, delta 4)      196  4  v3 tick       (i32)
     20    20  pool                       200     4  delta.tick_lower (i32)
     40     4  log_index (u32)            204     4  delta.tick_upper (i32)
     44     8  block (u64)                208    32  delta.liquidity  (i256 BE, two's complement)
    (tag, chain, flags and pool sit in the first 40 bytes: `peek` reads only those)

Why: orjson's loads of this record costs a reader 2-3 µs and builds a dozen objects, for every
record, even the ones it will ignore; `peek` answers "which pool, does it interrupt?" from 24
bytes at fixed offsets, and `decode` turns only the record a reader keeps into the dict.
Values are refused, with the field named, unless they are canonical (lower-case hex of the right
length, decimal strings without sign or leading zeros), so a decoded record is always equal to
what orjson would have delivered; whatever does not fit this layout goes as JSON (the cold path).
"""
from __future__ import annotations

import struct

from engine.core.frame import HEADER_SIZE

TAG = 0x50          # b"P"
VERSION = 1
CHAINS = ("arbitrum", "base", "polygon")
KINDS = ("v2", "v3")
EVENTS = ("sync", "swap", "mint", "burn", "created")
F_INTERRUPT, F_REVERTED, F_DELTA = 1, 2, 4

_LAYOUT = struct.Struct("<BB6xQ BBBB20sIQqQ 32s32s32s32s iii32s")
SIZE = _LAYOUT.size
_PEEK = struct.Struct("<B15xBBBB20s")
_STATE = struct.Struct("<19xB20xIQ80x32s32si")   # flags, log_index, block, state words, tick
_CHAIN_IX = {c: i for i, c in enumerate(CHAINS)}
_KIND_IX = {k: i for i, k in enumerate(KINDS)}
_EVENT_IX = {e: i for i, e in enumerate(EVENTS)}
_KEYS = frozenset(("type", "chain", "block", "block_hash", "tx", "log_index", "pool", "kind",
                   "event", "state", "impact_bps", "interrupt", "reverted", "t_origin"))
_OPTIONAL = frozenset(("delta", "t_written"))
_STATE_KEYS = {"v2": frozenset(("reserve0", "reserve1")),
               "v3": frozenset(("sqrt_price_x96", "liquidity", "tick"))}
_DELTA_KEYS = frozenset(("tick_lower", "tick_upper", "liquidity"))
_U256 = 1 << 256
_I32 = 1 << 31
assert SIZE == 240 and HEADER_SIZE == 16   # the table above


def _fail(field: str, why: str) -> ValueError:
    return ValueError(f"pool record: {field}: {why}")


def _int(d: dict, key: str, lo: int, hi: int, where: str = "") -> int:
    v = d[key]
    if type(v) is not int:
        raise _fail(where + key, f"must be an int, not {type(v).__name__}")
    if not lo <= v < hi:
        raise _fail(where + key, f"{v} out of range [{lo}, {hi})")
    return v


def _hex(d: dict, key: str, nbytes: int) -> bytes:
    v = d[key]
    if type(v) is not str or len(v) != 2 + 2 * nbytes or not v.startswith("0x") or \
            not v.islower():   # "0x" makes islower() mean "no upper-case digit"
        raise _fail(key, f"must be 0x and {2 * nbytes} lower-case hex digits, got {v!r}")
    try:
        raw = bytes.fromhex(v[2:])
    except ValueError:
        raw = b""
    if len(raw) != nbytes:
        raise _fail(key, f"must be 0x and {2 * nbytes} lower-case hex digits, got {v!r}")
    return raw


def _dec(d: dict, key: str, where: str, signed: bool = False) -> bytes:
    """A canonical decimal string (what str(int) prints) as 32 big-endian bytes."""
    v = d[key]
    if type(v) is not str:
        raise _fail(where + key, f"must be a decimal string, not {type(v).__name__}")
    try:
        n = int(v)
    except ValueError:
        n = None
    if n is None or str(n) != v:
        raise _fail(where + key, f"{v!r} is not a canonical decimal string")
    if signed:
        if not -(_U256 >> 1) <= n < (_U256 >> 1):
            raise _fail(where + key, "does not fit an int256")
        return (n % _U256).to_bytes(32, "big")
    if not 0 <= n < _U256:
        raise _fail(where + key, "does not fit a uint256")
    return n.to_bytes(32, "big")


def _enum(d: dict, key: str, index: dict) -> int:
    v = d[key]
    i = index.get(v) if type(v) is str else None
    if i is None:
        raise _fail(key, f"{v!r} is not one of {', '.join(index)}")
    return i


def _bool(d: dict, key: str) -> bool:
    v = d[key]
    if type(v) is not bool:
        raise _fail(key, f"must be true or false, not {v!r}")
    return v


def _keys(d, want: frozenset, optional: frozenset, where: str) -> None:
    if not isinstance(d, dict):
        raise _fail(where or "record", f"must be an object, not {type(d).__name__}")
    have = d.keys()
    if have == want:   # the common case, in one comparison
        return
    missing, extra = want - have, have - want - optional
    if missing or extra:
        raise _fail(where or "record", (f"missing {', '.join(sorted(missing))}" if missing else "")
                    + ("; " if missing and extra else "")
                    + (f"unknown {', '.join(sorted(map(str, extra)))}" if extra else ""))


def encode(rec: dict) -> bytes:
    """The record as SIZE (240) bytes; ValueError naming the field if it is not a pool update."""
    _keys(rec, _KEYS, _OPTIONAL, "")
    if rec["type"] != "pool":
        raise _fail("type", f"must be 'pool', not {rec['type']!r}")
    kind = _enum(rec, "kind", _KIND_IX)
    event = _enum(rec, "event", _EVENT_IX)
    state = rec["state"]
    _keys(state, _STATE_KEYS[KINDS[kind]], frozenset(), "state")
    if kind == 0:
        a, b, tick = _dec(state, "reserve0", "state."), _dec(state, "reserve1", "state."), 0
    else:
        a, b = _dec(state, "sqrt_price_x96", "state."), _dec(state, "liquidity", "state.")
        tick = _int(state, "tick", -_I32, _I32, "state.")
    flags = (F_INTERRUPT if _bool(rec, "interrupt") else 0) | \
        (F_REVERTED if _bool(rec, "reverted") else 0)
    wants_delta = kind == 1 and EVENTS[event] in ("mint", "burn")
    if ("delta" in rec) != wants_delta:
        raise _fail("delta", "present exactly on v3 mint and burn records"
                    f" (this is {KINDS[kind]} {EVENTS[event]})")
    lower = upper = 0
    dliq = bytes(32)
    if wants_delta:
        delta = rec["delta"]
        _keys(delta, _DELTA_KEYS, frozenset(), "delta")
        lower = _int(delta, "tick_lower", -_I32, _I32, "delta.")
        upper = _int(delta, "tick_upper", -_I32, _I32, "delta.")
        dliq = _dec(delta, "liquidity", "delta.", signed=True)
        flags |= F_DELTA
    t_written = _int(rec, "t_written", 1, 1 << 64) if "t_written" in rec else 0
    return _LAYOUT.pack(
        TAG, VERSION, t_written, _enum(rec, "chain", _CHAIN_IX), kind, event, flags,
        _hex(rec, "pool", 20), _int(rec, "log_index", 0, 1 << 32), _int(rec, "block", 0, 1 << 64),
        _int(rec, "impact_bps", -(1 << 63), 1 << 63), _int(rec, "t_origin", 0, 1 << 64),
        _hex(rec, "block_hash", 32), _hex(rec, "tx", 32), a, b, tick, lower, upper, dliq)


def decode(raw) -> dict:
    """The dict orjson would have given for this record; ValueError if it is not one."""
    if len(raw) != SIZE:
        raise ValueError(f"pool record: {len(raw)} bytes, expected {SIZE}")
    (tag, version, t_written, chain, kind, event, flags, pool, log_index, block, impact,
     t_origin, block_hash, tx, a, b, tick, lower, upper, dliq) = _LAYOUT.unpack_from(raw)
    if tag != TAG or version != VERSION:
        raise ValueError(f"pool record: tag {tag:#x} version {version}, expected "
                         f"{TAG:#x} version {VERSION}")
    if chain >= len(CHAINS) or kind >= len(KINDS) or event >= len(EVENTS) or flags > 7:
        raise ValueError(f"pool record: chain {chain} kind {kind} event {event} flags {flags}: "
                         "not a value this codec writes")
    if kind == 0:
        state = {"reserve0": str(int.from_bytes(a, "big")),
                 "reserve1": str(int.from_bytes(b, "big"))}
    else:
        state = {"sqrt_price_x96": str(int.from_bytes(a, "big")),
                 "liquidity": str(int.from_bytes(b, "big")), "tick": tick}
    rec = {"type": "pool", "chain": CHAINS[chain], "block": block,
           "block_hash": "0x" + block_hash.hex(), "tx": "0x" + tx.hex(),
           "log_index": log_index, "pool": "0x" + pool.hex(), "kind": KINDS[kind],
           "event": EVENTS[event], "state": state, "impact_bps": impact,
           "interrupt": bool(flags & F_INTERRUPT), "reverted": bool(flags & F_REVERTED),
           "t_origin": t_origin}
    if flags & F_DELTA:
        rec["delta"] = {"tick_lower": lower, "tick_upper": upper,
                        "liquidity": str(int.from_bytes(dliq, "big", signed=True))}
    if t_written:
        rec["t_written"] = t_written
    return rec


def peek(raw) -> tuple[str, str, str, bool]:
    """(type, chain, pool, interrupt) from the first 40 bytes, nothing else decoded."""
    tag, chain, _kind, _event, flags, pool = _PEEK.unpack_from(raw)
    if tag != TAG or chain >= len(CHAINS):
        raise ValueError(f"pool record: tag {tag:#x} chain {chain}: not a pool record")
    return "pool", CHAINS[chain], "0x" + pool.hex(), bool(flags & F_INTERRUPT)


def state(raw, offset: int = 0) -> tuple[int, int, int, int, int, int]:
    """(flags, block, log_index, a, b, tick) of the record at `offset` of a buffer, read in
    place: what a reader that keeps a pool's replica needs, without building the dict.
    a, b = reserve0, reserve1 (v2) or sqrt_price_x96, liquidity (v3); tick is 0 for v2.
    No checks: for a record this reader already knows is a pool update of its own pool."""
    flags, log_index, block, a, b, tick = _STATE.unpack_from(raw, offset)
    return flags, block, log_index, int.from_bytes(a, "big"), int.from_bytes(b, "big"), tick


def pool_bytes(raw) -> bytes:
    """The pool's 20 address bytes, as they sit in the record: a reader that keeps only some
    pools compares these with `bytes.fromhex(address[2:])` and decodes nothing else."""
    return raw[20:40]


def interrupts(raw) -> bool:
    """Whether this record should interrupt anyone (one byte read)."""
    return bool(raw[19] & F_INTERRUPT)


#: For a RoleKind that reads pool updates: `decoders = records.DECODERS`.
DECODERS = {TAG: decode}
