"""The pool-update record's binary codec (engine/chain/records.py): every valid record decodes
to exactly what orjson would have delivered, `peek` agrees with the full decode, the publisher's
stamp lands where the decoder reads it, and invalid records are refused with the field named."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chain import records as R
from engine.core.frame import stamped, t_written
from enginehelp import collect

U256 = 1 << 256


def hexs(n: int):
    return st.binary(min_size=n, max_size=n).map(lambda b: "0x" + b.hex())


def dec(lo: int, hi: int):
    return st.integers(lo, hi - 1).map(str)


ticks = st.integers(-887272, 887272)


@st.composite
def pool_records(draw):
    kind = draw(st.sampled_from(R.KINDS))
    event = draw(st.sampled_from(R.EVENTS))
    if kind == "v2":
        state = {"reserve0": draw(dec(0, U256)), "reserve1": draw(dec(0, U256))}
    else:
        state = {"sqrt_price_x96": draw(dec(0, 1 << 160)), "liquidity": draw(dec(0, 1 << 128)),
                 "tick": draw(ticks)}
    rec = {"type": "pool", "chain": draw(st.sampled_from(R.CHAINS)),
           "block": draw(st.integers(0, (1 << 64) - 1)), "block_hash": draw(hexs(32)),
           "tx": draw(hexs(32)), "log_index": draw(st.integers(0, (1 << 32) - 1)),
           "pool": draw(hexs(20)), "kind": kind, "event": event, "state": state,
           "impact_bps": draw(st.integers(-(1 << 63), (1 << 63) - 1)),
           "interrupt": draw(st.booleans()), "reverted": draw(st.booleans()),
           "t_origin": draw(st.integers(0, (1 << 64) - 1))}
    if kind == "v3" and event in ("mint", "burn"):
        rec["delta"] = {"tick_lower": draw(ticks), "tick_upper": draw(ticks),
                        "liquidity": draw(dec(-(U256 >> 1), U256 >> 1))}
    if draw(st.booleans()):
        rec["t_written"] = draw(st.integers(1, (1 << 64) - 1))
    return rec


@settings(max_examples=400, deadline=None)
@given(pool_records())
def test_decode_equals_what_orjson_gives(rec):
    raw = R.encode(rec)
    assert len(raw) == R.SIZE and raw[0] == R.TAG and raw[:1] != b"{"
    assert R.decode(raw) == orjson.loads(orjson.dumps(rec))
    assert R.peek(raw) == ("pool", rec["chain"], rec["pool"], rec["interrupt"])
    assert R.interrupts(raw) is rec["interrupt"]
    assert R.pool_bytes(raw) == bytes.fromhex(rec["pool"][2:])


@settings(max_examples=100, deadline=None)
@given(pool_records(), st.integers(0, 64))
def test_state_reads_in_place_what_decode_gives(rec, at):
    raw = R.encode(rec)
    flags, block, log_index, a, b, tick = R.state(memoryview(bytes(at) + raw), at)
    d = R.decode(raw)
    s = d["state"]
    assert (block, log_index, tick) == (d["block"], d["log_index"], s.get("tick", 0))
    assert (str(a), str(b)) == ((s["reserve0"], s["reserve1"]) if d["kind"] == "v2" else
                                (s["sqrt_price_x96"], s["liquidity"]))
    assert (bool(flags & R.F_INTERRUPT), bool(flags & R.F_REVERTED)) == \
        (d["interrupt"], d["reverted"])


@given(pool_records(), st.integers(1, (1 << 64) - 1))
def test_publisher_stamp_is_the_decoded_t_written(rec, t):
    raw = stamped(R.encode(rec), t)
    assert t_written(raw) == t
    assert R.decode(raw) == {**orjson.loads(orjson.dumps(rec)), "t_written": t}
    j = stamped(orjson.dumps({k: v for k, v in rec.items() if k != "t_written"}), t)
    assert orjson.loads(j) == R.decode(raw)       # the JSON path stamps the same field


V2 = {"type": "pool", "chain": "base", "block": 7, "block_hash": "0x" + "aa" * 32,
      "tx": "0x" + "bb" * 32, "log_index": 1, "pool": "0x" + "cc" * 20, "kind": "v2",
      "event": "sync", "state": {"reserve0": "1000", "reserve1": "2000"}, "impact_bps": 0,
      "interrupt": False, "reverted": False, "t_origin": 5}


@pytest.mark.parametrize("change, field", [
    ({"pool": "0x" + "CC" * 20}, "pool"),                        # upper case
    ({"tx": "0x" + "bb" * 31}, "tx"),                             # short
    ({"block_hash": "aa" * 33}, "block_hash"),                    # no 0x
    ({"state": {"reserve0": "01000", "reserve1": "2000"}}, "state.reserve0"),   # not canonical
    ({"state": {"reserve0": "-1", "reserve1": "2000"}}, "state.reserve0"),
    ({"state": {"reserve0": str(U256), "reserve1": "2000"}}, "state.reserve0"),
    ({"state": {"reserve0": 1000, "reserve1": "2000"}}, "state.reserve0"),      # int, not str
    ({"state": {"reserve0": "1"}}, "state"),
    ({"chain": "ethereum"}, "chain"),
    ({"kind": "v4"}, "kind"),
    ({"type": "swap"}, "type"),
    ({"block": -1}, "block"),
    ({"log_index": True}, "log_index"),
    ({"interrupt": 1}, "interrupt"),
    ({"delta": {"tick_lower": 0, "tick_upper": 1, "liquidity": "5"}}, "delta"),   # v2 sync
    ({"extra": 1}, "unknown extra"),
])
def test_invalid_records_are_refused_naming_the_field(change, field):
    with pytest.raises(ValueError, match=f"pool record: .*{field}"):
        R.encode({**V2, **change})


def test_v3_mint_needs_its_delta_and_a_bad_record_does_not_decode():
    v3 = {**V2, "kind": "v3", "event": "mint",
          "state": {"sqrt_price_x96": "79228162514264337593543950336", "liquidity": "10",
                    "tick": 0}}
    with pytest.raises(ValueError, match="delta"):
        R.encode(v3)
    raw = R.encode({**v3, "delta": {"tick_lower": -60, "tick_upper": 60, "liquidity": "-1000"}})
    assert R.decode(raw)["delta"] == {"tick_lower": -60, "tick_upper": 60, "liquidity": "-1000"}
    with pytest.raises(ValueError, match="bytes"):
        R.decode(raw[:-1])
    with pytest.raises(ValueError, match="tag"):
        R.decode(b"Q" + raw[1:])
    bad = bytearray(raw)
    bad[16] = 9                                     # chain index out of range
    with pytest.raises(ValueError, match="chain 9"):
        R.decode(bytes(bad))


def test_binary_pool_records_reach_the_agent_and_quiet_ones_interrupt_nobody(engine_factory):
    """A real engine: a source publishes 13 binary pool records, every third without a signal
    (the quiet ones wait in the ring for the next interrupt, which drains them too); the agent
    decodes each through its kind's decoder, stamped by the publisher, and decides on the
    interrupting ones."""
    e = engine_factory(roles={
        "src": {"kind": "roles.probe:PoolRecordSource", "chains": ["base"],
                "options": {"rate": 20.0, "count": 13, "quiet": 3}},
        "spot": {"kind": "roles.agents:Agent", "chains": ["base"],
                 "tasks": {"checksum": {"interval": 0.2, "options": {"links_per_run": 500}}}},
    }).start()
    # the agent takes all 13 into its replica; only the 9 interrupting ones get a decision
    # (refusals: no replica, as no monitor wrote a snapshot)
    got, lost = collect(e, "spot", 9, timeout=60)
    assert lost == 0 and len(got) == 9
    assert sorted(d["impact_bps"] for d in got) == [60 + i for i in range(13) if (i + 1) % 3]
    assert {d["pool"] for d in got} == {"0x" + (0xabc0 + i).to_bytes(20, "big").hex()
                                        for i in range(2)}   # every 3rd (0xabc2) is quiet
    assert all(d["chain"] == "base" and isinstance(d["t_event"], int) and d["t_event"] > 0
               for d in got)                       # t_written: stamped into the header
    assert all(d["kind"] == "opportunity" and d["code"] == "no-replica" for d in got)
    r = e.wait_for(lambda: (x := e.roles()["spot"])["events"] == 13 and x, 10, "counted")
    assert r["events_lost"] == 0
    assert r["interrupts"] <= 9                    # 4 of the 13 were published quietly
    assert e.stop() == 0
