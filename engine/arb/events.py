"""Decoding DEX logs (topics + data hex, as nodes, eth_getLogs and webhooks deliver them) into
integers.  Pure: strings in, numbers out; the chain layer does the fetching.

    V2 Sync(uint112 reserve0, uint112 reserve1)
    V2 Swap(address indexed sender, uint amount0In, uint amount1In, uint amount0Out,
            uint amount1Out, address indexed to)
    V3 Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,
            uint160 sqrtPriceX96, uint128 liquidity, int24 tick)
    V3 Initialize(uint160 sqrtPriceX96, int24 tick)       (a new pool's first price)
    V3 Mint(address sender, address indexed owner, int24 indexed tickLower,
            int24 indexed tickUpper, uint128 amount, uint256 amount0, uint256 amount1)
    V3 Burn(address indexed owner, int24 indexed tickLower, int24 indexed tickUpper,
            uint128 amount, uint256 amount0, uint256 amount1)
    V2 factory PairCreated(address indexed token0, address indexed token1, address pair, uint)
    V3 factory PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee,
                           int24 tickSpacing, address pool)

Malformed logs (wrong number of topics or words, data that is not hex) raise ValueError naming
the event; a topic0 this module does not know decodes to None.
"""
from __future__ import annotations

from dataclasses import dataclass

SYNC_TOPIC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
V2_SWAP_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
V3_SWAP_TOPIC = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
V3_INITIALIZE_TOPIC = "0x98636036cb66a9c19a37435efc1e90142190214e8abeb821bdba3f2990dd4c95"
V3_MINT_TOPIC = "0x7a53080ba414158be7ec69b987b5fb7d07dee101fe85488f0853ae16239d0bde"
V3_BURN_TOPIC = "0x0c396cd989a39f4459b5fa1aed6a9a8dcdbc45908acfd67e028cd568da98982c"
PAIR_CREATED_TOPIC = "0x0d3648bd0f6ba80134a33ba9275ac585d9d315f0ad8355cddefde31afa28d0e9"
POOL_CREATED_TOPIC = "0x783cca1c0412dd0d695e784568c96da2e9c22ff989357a2e8b1d9b2b4e6b7118"


def _words(data: str) -> list[int]:
    h = data[2:] if data.startswith(("0x", "0X")) else data
    if len(h) % 64:
        raise ValueError(f"log data is not a whole number of 32-byte words ({len(h)} hex digits)")
    try:
        return [int(h[i:i + 64], 16) for i in range(0, len(h), 64)]
    except ValueError:
        raise ValueError(f"log data is not hex: {data[:20]!r}...") from None


def _topic_int(topic: str) -> int:
    try:
        return int(topic, 16)
    except (TypeError, ValueError):
        raise ValueError(f"topic is not hex: {topic!r}") from None


def _signed(word: int, bits: int = 256) -> int:
    return word - (1 << bits) if word >> (bits - 1) else word


def _address(topic: str | int) -> str:
    """A topic or a data word holding an address, as lower-case 0x hex."""
    value = topic if isinstance(topic, int) else _topic_int(topic)
    return "0x" + format(value & ((1 << 160) - 1), "040x")


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


@dataclass(frozen=True, slots=True)
class V3Initialize:
    sqrt_price_x96: int
    tick: int


@dataclass(frozen=True, slots=True)
class V3Mint:
    owner: str
    tick_lower: int
    tick_upper: int
    amount: int           # liquidity added
    amount0: int
    amount1: int


@dataclass(frozen=True, slots=True)
class V3Burn:
    owner: str
    tick_lower: int
    tick_upper: int
    amount: int           # liquidity removed (0: a poke that only updates fees)
    amount0: int
    amount1: int


@dataclass(frozen=True, slots=True)
class PairCreated:
    token0: str
    token1: str
    pair: str


@dataclass(frozen=True, slots=True)
class PoolCreated:
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    pool: str


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


def decode_v3_initialize(topics: list[str], data: str) -> V3Initialize:
    w = _words(data)
    if len(w) != 2 or len(topics) != 1:
        raise ValueError("V3 Initialize carries 1 topic and 2 words")
    return V3Initialize(w[0], _signed(w[1]))


def _ticks(topics: list[str]) -> tuple[int, int]:
    return _signed(_topic_int(topics[2])), _signed(_topic_int(topics[3]))


def decode_v3_mint(topics: list[str], data: str) -> V3Mint:
    w = _words(data)
    if len(w) != 4 or len(topics) != 4:
        raise ValueError("V3 Mint carries 4 topics and 4 words")
    return V3Mint(_address(topics[1]), *_ticks(topics), w[1], w[2], w[3])


def decode_v3_burn(topics: list[str], data: str) -> V3Burn:
    w = _words(data)
    if len(w) != 3 or len(topics) != 4:
        raise ValueError("V3 Burn carries 4 topics and 3 words")
    return V3Burn(_address(topics[1]), *_ticks(topics), *w)


def decode_pair_created(topics: list[str], data: str) -> PairCreated:
    w = _words(data)
    if len(w) != 2 or len(topics) != 3:
        raise ValueError("PairCreated carries 3 topics and 2 words")
    return PairCreated(_address(topics[1]), _address(topics[2]), _address(w[0]))


def decode_pool_created(topics: list[str], data: str) -> PoolCreated:
    w = _words(data)
    if len(w) != 2 or len(topics) != 4:
        raise ValueError("PoolCreated carries 4 topics and 2 words")
    return PoolCreated(_address(topics[1]), _address(topics[2]), _topic_int(topics[3]),
                       _signed(w[0]), _address(w[1]))


Event = V2Sync | V2Swap | V3Swap | V3Initialize | V3Mint | V3Burn | PairCreated | PoolCreated
_DECODERS = {
    SYNC_TOPIC: lambda topics, data: decode_v2_sync(data),
    V2_SWAP_TOPIC: decode_v2_swap,
    V3_SWAP_TOPIC: decode_v3_swap,
    V3_INITIALIZE_TOPIC: decode_v3_initialize,
    V3_MINT_TOPIC: decode_v3_mint,
    V3_BURN_TOPIC: decode_v3_burn,
    PAIR_CREATED_TOPIC: decode_pair_created,
    POOL_CREATED_TOPIC: decode_pool_created,
}
# what a monitor subscribes to: the watched pools' logs, and the factories'
POOL_TOPICS = (SYNC_TOPIC, V2_SWAP_TOPIC, V3_SWAP_TOPIC, V3_INITIALIZE_TOPIC, V3_MINT_TOPIC,
               V3_BURN_TOPIC)
FACTORY_TOPICS = (PAIR_CREATED_TOPIC, POOL_CREATED_TOPIC)


def decode(topics: list[str], data: str) -> Event | None:
    """Any of the events above by its topic0; None for other events (ValueError if malformed)."""
    if not topics:
        return None
    t0 = topics[0]
    fn = _DECODERS.get(t0.lower() if isinstance(t0, str) else t0)
    return None if fn is None else fn(topics, data)
