"""Decoding DEX logs (topics + data hex, as nodes, eth_getLogs and webhooks deliver them) into
integers.  Pure: strings in, numbers out; the chain layer does the fetching.

    V2 Sync(uint112 reserve0, uint112 reserve1)
    V2 Swap(address indexed sender, uint amount0In, uint amount1In, uint amount0Out,
            uint amount1Out, address indexed to)
    V3 Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,
            uint160 sqrtPriceX96, uint128 liquidity, int24 tick)
"""
from __future__ import annotations

from dataclasses import dataclass

SYNC_TOPIC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
V2_SWAP_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
V3_SWAP_TOPIC = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"


def _words(data: str) -> list[int]:
    h = data[2:] if data.startswith(("0x", "0X")) else data
    if len(h) % 64:
        raise ValueError(f"log data is not a whole number of 32-byte words ({len(h)} hex digits)")
    return [int(h[i:i + 64], 16) for i in range(0, len(h), 64)]


def _signed(word: int, bits: int = 256) -> int:
    return word - (1 << bits) if word >> (bits - 1) else word


def _address(topic: str) -> str:
    return "0x" + topic[-40:]


@dataclass(frozen=True, slots=True)
class V2Sync:
    reserve0: int
    reserve1: int


@dataclass(frozen=True, slots=True)
class V2Swap:
    sender: str
    to: str
    amount0_in: int
    amount1_in: int
    amount0_out: int
    amount1_out: int


@dataclass(frozen=True, slots=True)
class V3Swap:
    sender: str
    recipient: str
    amount0: int          # > 0 into the pool
    amount1: int
    sqrt_price_x96: int
    liquidity: int
    tick: int


def decode_v2_sync(data: str) -> V2Sync:
    w = _words(data)
    if len(w) != 2:
        raise ValueError(f"Sync carries 2 words, got {len(w)}")
    return V2Sync(w[0], w[1])


def decode_v2_swap(topics: list[str], data: str) -> V2Swap:
    w = _words(data)
    if len(w) != 4 or len(topics) != 3:
        raise ValueError("V2 Swap carries 3 topics and 4 words")
    return V2Swap(_address(topics[1]), _address(topics[2]), *w)


def decode_v3_swap(topics: list[str], data: str) -> V3Swap:
    w = _words(data)
    if len(w) != 5 or len(topics) != 3:
        raise ValueError("V3 Swap carries 3 topics and 5 words")
    return V3Swap(_address(topics[1]), _address(topics[2]), _signed(w[0]), _signed(w[1]),
                  w[2], w[3], _signed(w[4]))


def decode(topics: list[str], data: str) -> V2Sync | V2Swap | V3Swap | None:
    """Any of the three by its topic; None for other events."""
    if not topics:
        return None
    t0 = topics[0].lower()
    if t0 == SYNC_TOPIC:
        return decode_v2_sync(data)
    if t0 == V2_SWAP_TOPIC:
        return decode_v2_swap(topics, data)
    if t0 == V3_SWAP_TOPIC:
        return decode_v3_swap(topics, data)
    return None
