"""Pre-encoded ring records (engine/core/frame.py): the publisher stamps `t_written` into a
binary header or a JSON object without decoding it, and a role kind reads JSON by default and
a tagged binary record only through a decoder it declares."""
from __future__ import annotations

import struct

import orjson
import pytest

from engine.core.frame import HEADER, stamped, t_written
from engine.core.ring import Ring
from engine.core.role import RoleKind
from engine.core.switch import EventPublisher


def test_stamp_binary_in_place_or_copied_and_json_by_appending():
    rec = HEADER.pack(0x51, 1, 0) + b"body"
    buf = bytearray(rec)
    assert stamped(buf, 42) is buf and t_written(buf) == 42     # a bytearray: no copy
    out = stamped(rec, 7)
    assert t_written(out) == 7 and t_written(rec) == 0 and out[16:] == b"body"
    assert orjson.loads(stamped(b'{"a": 1} ', 9)) == {"a": 1, "t_written": 9}
    assert orjson.loads(stamped(b"{}", 9)) == {"t_written": 9}


@pytest.mark.parametrize("bad, why", [(b"", "empty"), (b"[1, 2]", "header"),
                                      (b'{"a": 1', "not an object"), (b"Pshort", "header")])
def test_stamp_refuses_what_it_cannot_stamp(bad, why):
    with pytest.raises(ValueError, match=why):
        stamped(bad, 1)


class _Tagged(RoleKind):
    decoders = {0x51: lambda raw: {"tag": "Q", "t": t_written(raw), "body": raw[16:].decode()}}


def test_kind_decodes_json_by_default_and_binary_only_with_a_decoder():
    rec = HEADER.pack(0x51, 1, 5) + b"hi"
    assert RoleKind.decode(b'{"x": 1}') == {"x": 1}
    with pytest.raises(ValueError, match="no decoder"):
        RoleKind.decode(rec)
    with pytest.raises(ValueError):
        RoleKind.decode(b"")
    assert _Tagged.decode(rec) == {"tag": "Q", "t": 5, "body": "hi"}
    assert _Tagged.decode(b'{"x": 1}') == {"x": 1}


def test_publisher_writes_pre_encoded_records_stamped(unique_name):
    name = f"/syn.{unique_name}.frame"
    ring = Ring.create(name, slots=64, slot_size=128, max_readers=1)
    try:
        rd = ring.reader(0, start="latest")
        pub = EventPublisher(ring, None)
        seq = pub.publish_encoded([HEADER.pack(0x51, 1, 0) + b"a", b'{"k": "v"}'])
        got = rd.poll(10).records
        assert seq == 1 and len(got) == 2
        t = t_written(got[0])
        assert t > 0 and struct.unpack_from("<B", got[0])[0] == 0x51
        assert orjson.loads(got[1]) == {"k": "v", "t_written": t}   # one stamp per batch
    finally:
        ring.close()
        Ring.unlink(name)
