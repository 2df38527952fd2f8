"""Price impact in bps from decoded logs, and the log decoders."""
from __future__ import annotations

from engine.arb.events import (SYNC_TOPIC, V3_SWAP_TOPIC, V2Sync, V3Swap, decode)
from engine.arb.impact import price_impact, v2_sync_impact, v3_swap_impact
from engine.arb.v2 import V2Pool
from engine.arb.v3 import Q96


def test_v2_sync_impact_and_threshold():
    p = V2Pool("0xP", "0xA", "0xB", 10**6, 10**6)
    assert v2_sync_impact(p, 10**6, 1_005_000).bps == 50
    assert v2_sync_impact(p, 10**6, 1_005_000).significant
    just_under = v2_sync_impact(p, 10**6, 1_004_999)
    assert just_under.bps == 49 and not just_under.significant
    down = v2_sync_impact(p, 1_010_000, 10**6)
    assert not down.up and down.bps == 99 and down.significant      # 1/1.01 - 1 = -0.990 %
    assert v2_sync_impact(p, 10**6, 1_003_000, threshold_bps=25).significant
    assert price_impact(p, p.with_reserves(10**6, 1_020_000)).bps == 200


def test_v3_swap_impact():
    s = Q96
    s2 = s * 10_025 // 10_000          # sqrt price +0.25 % -> price +0.500625 %
    i = v3_swap_impact(s, s2, "0xP")
    assert i.bps == 50 and i.up and i.significant
    assert not v3_swap_impact(s, s * 10_024 // 10_000).significant


def word(x: int) -> str:
    return f"{x % (1 << 256):064x}"


def test_decoders_round_trip():
    d = decode([SYNC_TOPIC], "0x" + word(123) + word(456))
    assert d == V2Sync(123, 456)
    topics = [V3_SWAP_TOPIC, "0x" + "0" * 24 + "11" * 20, "0x" + "0" * 24 + "22" * 20]
    data = "0x" + word(-5) + word(7) + word(Q96) + word(10**18) + word(-200)
    s = decode(topics, data)
    assert s == V3Swap("0x" + "11" * 20, "0x" + "22" * 20, -5, 7, Q96, 10**18, -200)
    assert decode(["0xdead"], "0x") is None
