"""The liquidity and factory log decoders: Initialize, Mint, Burn, PairCreated, PoolCreated."""
from __future__ import annotations

import pytest

from engine.arb import events as ev


def word(x: int) -> str:
    return f"{x % (1 << 256):064x}"


def topic(x: int) -> str:
    return "0x" + word(x)


A, B, C = (int(c * 40, 16) for c in "abc")


def test_mint_burn_with_negative_ticks():
    m = ev.decode([ev.V3_MINT_TOPIC, topic(A), topic(-887220), topic(-60)],
                  "0x" + word(B) + word(10**20) + word(5) + word(6))
    assert m == ev.V3Mint("0x" + "a" * 40, -887220, -60, 10**20, 5, 6)
    b = ev.decode([ev.V3_BURN_TOPIC.upper().replace("0X", "0x"), topic(A), topic(-120), topic(887220)],
                  "0x" + word(0) + word(0) + word(0))
    assert b == ev.V3Burn("0x" + "a" * 40, -120, 887220, 0, 0, 0)
    i = ev.decode([ev.V3_INITIALIZE_TOPIC], "0x" + word(1 << 96) + word(-1))
    assert i == ev.V3Initialize(1 << 96, -1)


def test_factory_events():
    p = ev.decode([ev.PAIR_CREATED_TOPIC, topic(A), topic(B)], "0x" + word(C) + word(7))
    assert p == ev.PairCreated("0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40)
    q = ev.decode([ev.POOL_CREATED_TOPIC, topic(A), topic(B), topic(500)], "0x" + word(10) + word(C))
    assert q == ev.PoolCreated("0x" + "a" * 40, "0x" + "b" * 40, 500, 10, "0x" + "c" * 40)


@pytest.mark.parametrize("topics,data,match", [
    ([ev.V3_MINT_TOPIC, topic(A), topic(1)], "0x" + word(0) * 4, "4 topics"),
    ([ev.V3_BURN_TOPIC, topic(A), topic(1), topic(2)], "0x" + word(0) * 2, "3 words"),
    ([ev.PAIR_CREATED_TOPIC, topic(A), topic(B)], "0x" + word(C) + word(1)[:-2], "whole number"),
    ([ev.POOL_CREATED_TOPIC, topic(A), topic(B), "0xnothex"], "0x" + word(1) * 2, "not hex"),
    ([ev.V3_INITIALIZE_TOPIC], "0x" + "zz" * 64, "not hex"),
])
def test_malformed_logs_raise_value_error(topics, data, match):
    with pytest.raises(ValueError, match=match):
        ev.decode(topics, data)


def test_unknown_topic_is_none():
    assert ev.decode(["0x" + "ee" * 32], "0x") is None and ev.decode([], "0x") is None
