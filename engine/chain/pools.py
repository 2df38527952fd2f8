"""Reading pools' exact state from a node, in JSON-RPC batches, into engine/arb's V2Pool/V3Pool.

    specs (address, kind?, dex, fee)            from the manifest (`specs_from_manifest`), a
      │                                         config, or a factory's PairCreated/PoolCreated
      ▼
    load_pools(rpc, specs, block)               all reads pinned to ONE block number
      1. eth_getCode                            no code -> a per-pool error
      2. kind, when not given                   tickSpacing() answers -> V3, getReserves() -> V2
      3. V2: token0 token1 getReserves          V3: token0 token1 fee tickSpacing slot0 liquidity
      4. V3: tickBitmap(w) for every word of the tick range at that spacing
      5. V3: ticks(t) of every set bit          liquidityNet (the V3Pool's tick table) and
                                                liquidityGross (the book needs it to know when a
                                                burn un-initialises a tick)
      ▼
    Loaded(block, pools, gross, errors)

Every call of one stage goes out in one `RpcClient.batch` (chunked by the client), so the whole
load costs a handful of round trips however many pools there are.  A pool whose code is missing,
or any of whose calls reverts or answers garbage, lands in `errors` with the reason; the others
load.  Addresses are lower-case hex throughout (what logs carry, what records carry).

The V2 fee is not on chain: it comes from the DEX (the manifest's `dexes[].fee`, bps), 30 bps by
default: the devnet's real UniswapV2Pair bytecode fixes 0.3 %.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from eth_utils import keccak

from engine.arb.v2 import V2Pool
from engine.arb.v3 import MAX_TICK, MIN_TICK, V3Pool
from engine.chain.rpc import RpcClient, RpcError, eth_call_params

DEFAULT_V2_FEE_BPS = 30
_M256 = (1 << 256) - 1


def _sel(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


SEL = {name: _sel(sig) for name, sig in {
    "token0": "token0()", "token1": "token1()", "getReserves": "getReserves()",
    "fee": "fee()", "tickSpacing": "tickSpacing()", "slot0": "slot0()",
    "liquidity": "liquidity()", "tickBitmap": "tickBitmap(int16)", "ticks": "ticks(int24)",
}.items()}


def _arg(x: int) -> str:
    """One signed ABI word (int16/int24 arguments are sign-extended to 256 bits)."""
    return format(x & _M256, "064x")


def _signed(w: int, bits: int) -> int:
    w &= (1 << bits) - 1
    return w - (1 << bits) if w >> (bits - 1) else w


@dataclass(frozen=True)
class PoolSpec:
    address: str
    kind: str | None = None       # "v2" | "v3" | None: ask the chain
    dex: str = ""
    fee_bps: int | None = None    # V2 only; None: the DEX's, else DEFAULT_V2_FEE_BPS


@dataclass
class Loaded:
    block: int                                  # every read was made at this block
    pools: dict[str, V2Pool | V3Pool] = field(default_factory=dict)
    gross: dict[str, dict[int, int]] = field(default_factory=dict)   # V3: tick -> liquidityGross
    errors: dict[str, str] = field(default_factory=dict)             # address -> why not loaded


class _PoolError(Exception):
    pass


def specs_from_manifest(chain: dict) -> list[PoolSpec]:
    """A devnet manifest chain entry's pools, with each V2 DEX's fee."""
    fees = {d["name"]: d.get("fee") for d in chain.get("dexes", []) if d.get("kind") == "v2"}
    return [PoolSpec(p["address"].lower(), p.get("kind"), p.get("dex", ""),
                     fees.get(p.get("dex")) if p.get("kind") == "v2" else None)
            for p in chain.get("pools", [])]


def word_range(tick_spacing: int) -> range:
    """The tickBitmap words that can hold a tick of this spacing (TickBitmap.position)."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


class _Reader:
    """Batches eth_calls at one block; answers words (ints) per call or raises _PoolError."""

    def __init__(self, rpc: RpcClient, block: int):
        self.rpc, self.tag = rpc, hex(block)

    def calls(self, reqs: list[tuple[str, str, str]]) -> list[list[int] | _PoolError]:
        """reqs: (to, selector name, args hex) -> each answer as 32-byte words, or the error."""
        out = self.rpc.batch([("eth_call", eth_call_params(to, SEL[name] + args, self.tag))
                              for to, name, args in reqs])
        res: list[list[int] | _PoolError] = []
        for (to, name, _), r in zip(reqs, out):
            if isinstance(r, RpcError):
                res.append(_PoolError(f"{name}() {'reverted' if r.is_revert else 'failed'}: {r.message}"))
                continue
            h = r[2:] if isinstance(r, str) and r.startswith("0x") else None
            if h is None or not h or len(h) % 64:
                res.append(_PoolError(f"{name}() answered {str(r)[:40]!r}: not ABI words"))
                continue
            try:
                res.append([int(h[i:i + 64], 16) for i in range(0, len(h), 64)])
            except ValueError:
                res.append(_PoolError(f"{name}() answered non-hex data"))
        return res


def load_pools(rpc: RpcClient, specs: Iterable[PoolSpec], block: int | str = "latest",
               fee_by_dex: dict[str, int] | None = None) -> Loaded:
    """Read every pool at one block (a number, or "latest" resolved once to a number)."""
    specs = {s.address.lower(): s for s in specs}
    number = int(rpc.call("eth_blockNumber", []), 16) if block == "latest" else int(block)
    got = Loaded(number)
    rd = _Reader(rpc, number)

    kinds = _kinds(rpc, rd, specs, got.errors)
    v2 = [a for a, k in kinds.items() if k == "v2"]
    v3 = [a for a, k in kinds.items() if k == "v3"]

    # 3. the state
    names2 = ("token0", "token1", "getReserves")
    names3 = ("token0", "token1", "fee", "tickSpacing", "slot0", "liquidity")
    reqs = [(a, n, "") for a in v2 for n in names2] + [(a, n, "") for a in v3 for n in names3]
    answers = iter(rd.calls(reqs))
    fees = fee_by_dex or {}
    for a in v2:
        t0, t1, res = (next(answers) for _ in names2)
        try:
            s = specs[a]
            fee = s.fee_bps if s.fee_bps is not None else fees.get(s.dex, DEFAULT_V2_FEE_BPS)
            got.pools[a] = V2Pool(a, _addr(t0), _addr(t1), _w(res, 0), _w(res, 1), fee_bps=fee, dex=s.dex)
        except _PoolError as e:
            got.errors[a] = f"{a}: {e}"
    heads: dict[str, tuple] = {}
    for a in v3:
        vals = [next(answers) for _ in names3]
        try:
            t0, t1, fee, spacing, slot0, liq = vals
            heads[a] = (_addr(t0), _addr(t1), _w(fee, 0), _signed(_w(spacing, 0), 24),
                        _w(slot0, 0), _signed(_w(slot0, 1), 24), _w(liq, 0))
            if heads[a][3] <= 0:
                raise _PoolError(f"tickSpacing {heads[a][3]}")
        except _PoolError as e:
            heads.pop(a, None)
            got.errors[a] = f"{a}: {e}"

    # 4. + 5. the tick tables
    for a, (pool, gross) in _tick_tables(rd, heads, got.errors).items():
        t0, t1, fee, spacing, sqrt_p, tick, liq = heads[a]
        got.pools[a] = V3Pool(a, t0, t1, fee, spacing, sqrt_p, liq, tick, pool, dex=specs[a].dex)
        got.gross[a] = gross
    return got


def _kinds(rpc: RpcClient, rd: "_Reader", specs: dict[str, PoolSpec], errors: dict[str, str]
           ) -> dict[str, str]:
    """address -> "v2" | "v3" for every pool with code (told, or asked: V3 pools answer
    tickSpacing(), V2 pairs getReserves()); the others get their reason in `errors`."""
    codes = rpc.batch([("eth_getCode", [a, rd.tag]) for a in specs])
    kinds: dict[str, str] = {}
    unknown = []
    for a, code in zip(specs, codes):
        if isinstance(code, RpcError):
            errors[a] = f"eth_getCode failed: {code.message}"
        elif not isinstance(code, str) or code in ("0x", "0x0", ""):
            errors[a] = f"no contract at {a} (block {int(rd.tag, 16)})"
        elif specs[a].kind is None:
            unknown.append(a)
        elif specs[a].kind in ("v2", "v3"):
            kinds[a] = specs[a].kind
        else:
            errors[a] = f"{a}: unknown pool kind {specs[a].kind!r}"
    for a, r3, r2 in zip(unknown, rd.calls([(a, "tickSpacing", "") for a in unknown]),
                         rd.calls([(a, "getReserves", "") for a in unknown])):
        if not isinstance(r3, _PoolError):
            kinds[a] = "v3"
        elif not isinstance(r2, _PoolError):
            kinds[a] = "v2"
        else:
            errors[a] = f"{a} is neither a V2 pair nor a V3 pool ({r3}; {r2})"
    return kinds


def _tick_tables(rd: _Reader, heads: dict[str, tuple], errors: dict[str, str]
                 ) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
    """address -> (tick -> liquidityNet, tick -> liquidityGross) of every initialised tick."""
    reqs = [(a, "tickBitmap", _arg(w)) for a, h in heads.items() for w in word_range(h[3])]
    answers = iter(rd.calls(reqs))
    initialised: dict[str, list[int]] = {}
    for a, h in heads.items():
        spacing, ticks, bad = h[3], [], None
        for w in word_range(spacing):
            r = next(answers)
            if isinstance(r, _PoolError):
                bad = bad or r
                continue
            word = r[0]
            while word:
                bit = (word & -word).bit_length() - 1
                ticks.append(((w << 8) + bit) * spacing)
                word &= word - 1
        if bad:
            errors[a] = f"{a}: {bad}"
        else:
            initialised[a] = ticks
    reqs = [(a, "ticks", _arg(t)) for a, ts in initialised.items() for t in ts]
    answers = iter(rd.calls(reqs))
    out = {}
    for a, ts in initialised.items():
        nets, gross, bad = {}, {}, None
        for t in ts:
            r = next(answers)
            if isinstance(r, _PoolError) or len(r) < 8:
                bad = bad or (r if isinstance(r, _PoolError) else _PoolError(f"ticks({t}) is short"))
                continue
            gross[t], nets[t] = r[0], _signed(r[1], 128)
            if not r[7]:
                bad = _PoolError(f"tick {t} is set in the bitmap but not initialised")
        if bad:
            errors[a] = f"{a}: {bad}"
        else:
            out[a] = (nets, gross)
    return out


def _w(r: Any, i: int) -> int:
    if isinstance(r, _PoolError):
        raise r
    if len(r) <= i:
        raise _PoolError(f"answer has {len(r)} words, expected more than {i}")
    return r[i]


def _addr(r: Any) -> str:
    return "0x" + format(_w(r, 0) & ((1 << 160) - 1), "040x")


def identify_kind(rpc: RpcClient, address: str, block: int | str = "latest") -> str:
    """"v2" or "v3" from the contract itself; ValueError naming why when it is neither."""
    a = address.lower()
    number = int(rpc.call("eth_blockNumber", []), 16) if block == "latest" else int(block)
    errors: dict[str, str] = {}
    kinds = _kinds(rpc, _Reader(rpc, number), {a: PoolSpec(a)}, errors)
    if a not in kinds:
        raise ValueError(errors[a])
    return kinds[a]
