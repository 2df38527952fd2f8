"""engine/arb's exact integer math against the real deployed Uniswap contracts on the devnet.

What is compared, to the wei, over a fixed-seed random sample (about 16 000 cases per run:
3 040 pair cases of 3 comparisons each, 3 000 library calls, 4 500 V3 swaps after ~2 500 random
pre-swaps, 3 000 TickMath calls):

    V2   engine.arb.v2.get_amount_out / get_amount_in / V2Pool against
         - the real UniswapV2Pair: after random donations + sync() (random reserves), send the
           input and call swap(): the pair accepts exactly the outputs y <= get_amount_out(x),
           pays them to the wei, and accepts get_amount_in(y) for y;
         - the real UniswapV2Router02 (@uniswap/v2-periphery) deployed on each devnet factory:
           getAmountsOut / getAmountsIn through the same pair, and its pure getAmountOut /
           getAmountIn (UniswapV2Library) on arbitrary reserves up to 2**112, reverts included.
    V3   engine.arb.v3.V3Pool.swap (and quote_exact_in / quote_exact_out) against the real
         UniswapV3Pool: exact input and exact output, both directions, with and without a price
         limit (limits on initialised ticks and on the wrong side too), from the seeded state and
         from random states reached by a real paid swap first; compared: amount0, amount1 and the
         pool's sqrtPriceX96, tick and liquidity after the swap (read inside the swap callback,
         which then reverts: the Uniswap quoter pattern), and the revert reason when it fails.
         The model's initialised ticks are read from the pool's whole tick bitmap.
    TickMath  get_tick_at_sqrt_ratio = slot0.tick after initialize(p) on a fresh real pool;
         get_sqrt_ratio_at_tick(t) = p - amount1 owed by mint(t, MAX_TICK, 2**96) at price
         p = MAX_SQRT_RATIO - 1 (exact: amount1 = ceil(2**96 * (p - ratio(t)) / 2**96)).

The probe contract (contracts/test/ArbMathProbe.sol, compiled here with the pinned solc-js through
scripts.build_contracts) runs many cases per eth_call, each in a sub-call that reverts, and the
eth_calls go to anvil as JSON-RPC batches.  The few real transactions (probe, routers, a fresh
pool, funding) are undone with evm_snapshot/evm_revert when the module ends.  Gas is never
asserted.
"""
from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eth_abi import decode, encode

from engine.arb import v2 as v2m
from engine.arb.v3 import (MAX_SQRT_RATIO, MAX_TICK, MIN_SQRT_RATIO, MIN_TICK, V3MathError,
                           V3Pool, get_sqrt_ratio_at_tick, get_tick_at_sqrt_ratio)

ROOT = Path(__file__).resolve().parent.parent.parent
SEED = 6_2024
# anvil takes an eth_call's gas above the block limit (30M): a V3 swap that runs past all the
# liquidity walks the bitmap word by word to the price limit, ~10k gas a word
CALL_GAS = 1_000_000_000
V2_PER_PAIR = 80               # 38 pairs -> 3040 pair cases (3 comparisons each)
V2_LIBRARY = 1500              # per function (getAmountOut, getAmountIn)
V3_PER_POOL = 300              # 15 pools -> 4500 swaps (+ ~2500 random pre-swaps)
TICK_CASES = 1500              # per function
ERROR_SELECTOR = bytes.fromhex("08c379a0")
# the pool's and its libraries' revert strings that the model raises by the same name
V3_REASONS = {"SPL", "AS", "LS", "LA", "R", "T"}

# ---- JSON-RPC, batched ---------------------------------------------------------------------

class Rpc:
    def __init__(self, url: str):
        import requests
        self.url = url
        self.session = requests.Session()

    def batch(self, calls: list[tuple[str, list]]) -> list:
        if not calls:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        replies = self.session.post(self.url, json=body, timeout=120).json()
        by_id = {r["id"]: r for r in replies}
        out = []
        for i, (m, _) in enumerate(calls):
            r = by_id[i]
            if "error" in r:
                raise RuntimeError(f"{m}: {r['error']}")
            out.append(r["result"])
        return out

    def one(self, method: str, params: list):
        return self.batch([(method, params)])[0]


def selector(signature: str) -> bytes:
    from eth_utils import keccak
    return keccak(text=signature)[:4]


def reason(data: bytes) -> str | None:
    """The string of an Error(string) revert, else None."""
    if data[:4] == ERROR_SELECTOR:
        return decode(["string"], data[4:])[0]
    return None


# ---- the probe and the devnet state it needs ------------------------------------------------

class ChainProbe:
    """One devnet chain: the deployed probe, a router per V2 DEX, the pools, batched calls."""

    def __init__(self, net, name: str, artifact):
        from engine.chain.contracts import deploy, load
        self.name = name
        self.w3 = net.w3(name)
        self.m = net.manifest["chains"][name]
        self.rpc = Rpc(net.rpc_url(name))
        self.me = self.m["accounts"]["deployer"]
        self.probe = deploy(self.w3, artifact, sender=self.me)
        weth = self.m["tokens"]["WETH"]["address"]
        self.routers = {d["name"]: deploy(self.w3, "UniswapV2Router02", d["factory"], weth, sender=self.me).address
                        for d in self.m["dexes"] if d["kind"] == "v2"}
        # the probe pays for donations, V2 inputs and pre-swaps: 10**9 USD of every token
        # (the deployer holds 10**10; pools hold at most a few 10**7)
        erc20 = load("DevToken")
        for t in self.m["tokens"].values():
            amount = int(10 ** 9 / t["usd"] * 10 ** t["decimals"])
            h = erc20.contract(self.w3, t["address"]).functions.transfer(self.probe.address, amount) \
                .transact({"from": self.me})
            assert self.w3.eth.wait_for_transaction_receipt(h, poll_latency=0.005)["status"] == 1
        self.v2_pools = [p for p in self.m["pools"] if p["kind"] == "v2"]
        self.v3_pools = [p for p in self.m["pools"] if p["kind"] == "v3"]

    def calls(self, fn_name: str, arg_lists: list[list]) -> list:
        """eth_call probe.<fn_name>(*args) for each args, in one JSON-RPC batch; decoded outputs."""
        fn = self.probe.get_function_by_name(fn_name)
        abi = fn.abi
        sel = selector(f"{fn_name}({','.join(_abi_type(i) for i in abi['inputs'])})")
        in_types = [_abi_type(i) for i in abi["inputs"]]
        out_types = [_abi_type(o) for o in abi["outputs"]]
        reqs = [("eth_call", [{"from": self.me, "to": self.probe.address, "gas": hex(CALL_GAS),
                               "data": "0x" + (sel + encode(in_types, args)).hex()}, "latest"])
                for args in arg_lists]
        return [decode(out_types, bytes.fromhex(r[2:])) for r in self.rpc.batch(reqs)]


def _abi_type(item: dict) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t


def _chunks(xs: list, n: int) -> list[list]:
    return [xs[i:i + n] for i in range(0, len(xs), n)]


@pytest.fixture(scope="module")
def onchain(devnet):
    """Compile the probe, deploy it (and routers, a fresh pool) on every chain inside a snapshot
    that is reverted when the module ends."""
    from engine.chain.contracts import Artifact, load
    from scripts.build_contracts import compile_sources
    art = compile_sources(ROOT / "contracts" / "test")["ArbMathProbe"]
    artifact = Artifact("ArbMathProbe", art["abi"], art["bytecode"], "contracts/test/ArbMathProbe.sol")
    snaps = {n: devnet.w3(n).provider.make_request("evm_snapshot", [])["result"] for n in devnet.chains}
    blocks = {n: devnet.w3(n).eth.block_number for n in devnet.chains}
    try:
        probes = {n: ChainProbe(devnet, n, artifact) for n in devnet.chains}
        # a fresh, uninitialised fee-100 pool (tick spacing 1) for the TickMath checks
        arb = probes["arbitrum"]
        v3dex = next(d for d in arb.m["dexes"] if d["kind"] == "v3")
        factory = load("UniswapV3Factory").contract(arb.w3, v3dex["factory"])
        weth, tok = arb.m["tokens"]["WETH"]["address"], arb.m["tokens"]["ARB"]["address"]
        assert int(factory.functions.getPool(weth, tok, 100).call(), 16) == 0
        h = factory.functions.createPool(weth, tok, 100).transact({"from": arb.me})
        assert arb.w3.eth.wait_for_transaction_receipt(h, poll_latency=0.005)["status"] == 1
        arb.fresh_pool = factory.functions.getPool(weth, tok, 100).call()
        yield probes
    finally:
        for n, s in snaps.items():
            assert devnet.w3(n).provider.make_request("evm_revert", [s])["result"] is True
            assert devnet.w3(n).eth.block_number == blocks[n]  # the session's devnet as we found it


def per_chain(probes: dict, fn) -> dict:
    """fn(probe) for every chain at once: the anvils work in parallel while Python checks."""
    with ThreadPoolExecutor(len(probes)) as ex:
        futures = {n: ex.submit(fn, p) for n, p in probes.items()}
        return {n: f.result() for n, f in futures.items()}


def loguniform(rng: random.Random, scale: int, lo_exp: float, hi_exp: float) -> int:
    return max(1, int(scale * 10 ** rng.uniform(lo_exp, hi_exp)))


# ---- V2 -----------------------------------------------------------------------------------

def _v2_chain(p: ChainProbe) -> tuple[dict, list[str]]:
    """Random pair cases on one chain; returns (counts, disagreements)."""
    rng = random.Random(f"{SEED}:v2:{p.name}")
    reserve_reqs = [("eth_call", [{"to": pool["address"], "data": "0x" + selector("getReserves()").hex()},
                                  "latest"]) for pool in p.v2_pools]
    reserves = [decode(["uint112", "uint112", "uint32"], bytes.fromhex(r[2:]))[:2]
                for r in p.rpc.batch(reserve_reqs)]
    cases, expect = [], []
    for pool, (r0, r1) in zip(p.v2_pools, reserves):
        router = p.routers[pool["dex"]]
        for _ in range(V2_PER_PAIR):
            d0 = d1 = 0
            if rng.random() < 0.6:  # random reserves: donate (up to 30x the reserve) and sync
                d0 = loguniform(rng, r0, -4, 1.5) if rng.random() < 0.8 else 0
                d1 = loguniform(rng, r1, -4, 1.5) if rng.random() < 0.8 else 0
            e0, e1 = r0 + d0, r1 + d1
            zfo = rng.random() < 0.5
            r_in, r_out = (e0, e1) if zfo else (e1, e0)
            if rng.random() < 0.5:  # exact input: ask the quote, or one wei more
                x = rng.randint(1, 1000) if rng.random() < 0.1 else loguniform(rng, r_in, -12, 1)
                y = v2m.get_amount_out(x, r_in, r_out) + (1 if rng.random() < 0.3 else 0)
            else:  # exact output: send get_amount_in(y), or one wei less
                y = rng.randint(1, 1000) if rng.random() < 0.1 else loguniform(rng, r_out, -12, -0.0005)
                if rng.random() < 0.05:
                    y = r_out + rng.randint(0, 3)  # the router reverts, the pair refuses
                try:
                    x = v2m.get_amount_in(y, r_in, r_out) - (1 if rng.random() < 0.3 else 0)
                except v2m.InsufficientLiquidity:
                    x = loguniform(rng, r_in, -2, 0)
            x = max(0, min(x, (1 << 112) - 1 - r_in))  # the pair's balances stay in uint112
            cases.append((pool["address"], router, zfo, d0, d1, x, y))
            expect.append((pool, e0, e1, zfo, x, y, bool(d0 or d1)))
    results = []
    for chunk_res in p.calls("v2", [[c] for c in _chunks(cases, 40)]):
        results.extend(chunk_res[0])
    bad: list[str] = []
    stats = {"cases": 0, "donated": 0, "paid": 0, "refused": 0, "router_reverts": 0}
    for (pool, e0, e1, zfo, x, y, donated), raw in zip(expect, results):
        r0, r1, quotes, swapped = decode(["uint256", "uint256", "bytes", "bytes"], raw)
        ok_out, q_out, ok_in, q_in = decode(["bool", "uint256", "bool", "uint256"], quotes)
        ok, received, err = decode(["bool", "uint256", "bytes"], swapped)
        where = f"{p.name} {pool['dex']} {pool['symbol0']}/{pool['symbol1']} zfo={zfo} x={x} y={y}"
        if (r0, r1) != (e0, e1):
            bad.append(f"{where}: reserves {r0},{r1} != expected {e0},{e1}")
            continue
        r_in, r_out = (r0, r1) if zfo else (r1, r0)
        model = v2m.V2Pool(pool["address"], pool["token0"], pool["token1"], r0, r1)
        t_in = pool["token0"] if zfo else pool["token1"]
        try:
            m_out = v2m.get_amount_out(x, r_in, r_out)
            assert model.amount_out(t_in, x) == m_out
        except v2m.InsufficientLiquidity:
            m_out = None
        try:
            m_in = v2m.get_amount_in(y, r_in, r_out)
            assert model.amount_in(model.other(t_in), y) == m_in
        except v2m.InsufficientLiquidity:
            m_in = None
        stats["cases"] += 1
        stats["donated"] += donated
        stats["paid" if ok else "refused"] += 1
        stats["router_reverts"] += (not ok_out) + (not ok_in)
        if (ok_out, q_out if ok_out else None) != (m_out is not None, m_out):
            bad.append(f"{where}: router getAmountsOut {ok_out and q_out} != model {m_out}")
        if (ok_in, q_in if ok_in else None) != (m_in is not None, m_in):
            bad.append(f"{where}: router getAmountsIn {ok_in and q_in} != model {m_in}")
        # the pair pays y for x iff 0 < y <= get_amount_out(x): get_amount_out is its largest output
        should = m_out is not None and 0 < y <= m_out
        if ok != should or (ok and received != y):
            bad.append(f"{where}: pair swap ok={ok} received={received} ({reason(err)}), model "
                       f"get_amount_out={m_out} get_amount_in={m_in}")
        if ok:
            after = model.after_swap(t_in, x, y)
            assert (after.reserve0, after.reserve1) == ((r0 + x, r1 - y) if zfo else (r0 - y, r1 + x))
    return stats, bad


def test_v2_pair_and_router_agree_with_the_model(onchain):
    res = per_chain(onchain, _v2_chain)
    stats = {k: sum(s[k] for s, _ in res.values()) for k in next(iter(res.values()))[0]}
    bad = [b for _, bs in res.values() for b in bs]
    assert not bad, f"{len(bad)} V2 disagreements ({stats}):\n" + "\n".join(bad[:20])
    assert stats["cases"] == sum(len(p.v2_pools) for p in onchain.values()) * V2_PER_PAIR >= 30 * V2_PER_PAIR
    # both sides of the pair's rule were exercised, and the library's reverts
    assert stats["paid"] >= 0.3 * stats["cases"] and stats["refused"] >= 0.2 * stats["cases"], stats
    assert stats["router_reverts"] >= 10 and stats["donated"] >= 0.4 * stats["cases"], stats


def test_v2_library_math_agrees_on_arbitrary_reserves(onchain):
    p = onchain["base"]
    rng = random.Random(f"{SEED}:v2lib")
    router = next(iter(p.routers.values()))

    def arg(zero_p=0.02):
        if rng.random() < zero_p:
            return 0
        return rng.choice((rng.randint(1, 1000), int(2 ** rng.uniform(0, 112))))

    outs = [[arg(), arg(), arg()] for _ in range(V2_LIBRARY)]
    ins = [[arg(), arg(), arg()] for _ in range(V2_LIBRARY)]
    for a in ins[:V2_LIBRARY // 4]:  # many outputs just under the reserve: the steep end
        a[1] = a[1] or 1
        a[2] = a[0] + rng.randint(1, 1000)
    res_out = [r for c in _chunks(outs, 400) for r in zip(*p.calls("v2Library", [[router, True, c]])[0])]
    res_in = [r for c in _chunks(ins, 400) for r in zip(*p.calls("v2Library", [[router, False, c]])[0])]
    bad = []
    for fn, args, results in ((v2m.get_amount_out, outs, res_out), (v2m.get_amount_in, ins, res_in)):
        for a, (ok, value) in zip(args, results):
            try:
                want = fn(*a)
            except v2m.InsufficientLiquidity:
                want = None
            if (ok, value if ok else None) != (want is not None, want):
                bad.append(f"{fn.__name__}{tuple(a)}: router {ok and value}, model {want}")
    assert len(res_out) == len(res_in) == V2_LIBRARY
    assert not bad, f"{len(bad)} disagreements:\n" + "\n".join(bad[:20])


# ---- V3 -----------------------------------------------------------------------------------

def _read_v3(p: ChainProbe, pool: dict) -> V3Pool:
    """The pool's swap state, with every initialised tick from its whole bitmap."""
    spacing = pool["tick_spacing"]
    lo_word, hi_word = (MIN_TICK // spacing) >> 8, (MAX_TICK // spacing) >> 8
    spans = [[pool["address"], a, min(a + 1499, hi_word)] for a in range(lo_word, hi_word + 1, 1500)]
    words = {}
    for pos, ws in p.calls("bitmap", spans):
        words.update(zip(pos, ws))
    ticks = sorted(((w << 8) + b) * spacing for w, word in words.items() for b in range(256) if word >> b & 1)
    (nets, inits), = p.calls("tickNets", [[pool["address"], ticks]])
    assert all(inits)
    slot0, liq = p.rpc.batch([
        ("eth_call", [{"to": pool["address"], "data": "0x" + selector(s).hex()}, "latest"])
        for s in ("slot0()", "liquidity()")])
    sqrt_p, tick = decode(["uint160", "int24"], bytes.fromhex(slot0[2:])[:64])
    return V3Pool(pool["address"], pool["token0"], pool["token1"], pool["fee"], spacing, sqrt_p,
                  int(liq, 16), tick, dict(zip(ticks, nets)))


def _default_limit(zfo: bool) -> int:
    return MIN_SQRT_RATIO + 1 if zfo else MAX_SQRT_RATIO - 1


def _random_swap(rng: random.Random, pool: V3Pool, scale: dict, pre: bool) -> tuple[bool, int, int | None]:
    """(zero_for_one, amount_specified, limit or None) for the model's pool state."""
    zfo = rng.random() < 0.5
    exact_in = rng.random() < 0.55
    drain_in, drain_out = scale[zfo]
    if pre:
        amount = loguniform(rng, drain_in if exact_in else drain_out, -7, -0.05)
    else:
        u = rng.random()
        if u < 0.06:
            amount = rng.randint(1, 10_000)
        elif u < 0.09 and exact_in:
            amount = int(2 ** rng.uniform(100, 254))  # overflow paths of SqrtPriceMath
        else:  # half of them big enough to leave the narrow range (cross initialised ticks)
            lo, hi = (-2.5, 0.3) if rng.random() < 0.5 else (-10, -2.5)
            amount = loguniform(rng, drain_in if exact_in else drain_out, lo, hi)
    amount = amount if exact_in else -amount
    u = rng.random()
    limit = None
    sp = pool.sqrt_price_x96
    if u < 0.25:  # a random limit on the right side, up to ~6 % away in price
        factor = 1 - rng.uniform(0, 0.1) ** 1.5 if zfo else 1 + rng.uniform(0, 0.1) ** 1.5
        limit = int(sp * factor)
    elif u < 0.45:  # exactly on a tick: initialised ones mostly
        near = [t for t in pool.ticks if (t <= pool.tick) == zfo]
        if near and rng.random() < 0.7:
            t = rng.choice(near)
        else:
            t = pool.tick - rng.randint(0, 3000) if zfo else pool.tick + rng.randint(1, 3000)
        limit = get_sqrt_ratio_at_tick(max(MIN_TICK, min(MAX_TICK, t)))
    elif u < 0.5 and not pre:  # anywhere, including the wrong side (SPL)
        limit = rng.randint(MIN_SQRT_RATIO - 2, min(MAX_SQRT_RATIO + 2, sp * 4))
    return zfo, amount, limit


def _state(r) -> tuple:
    return (r.amount0, r.amount1, r.pool.sqrt_price_x96, r.pool.tick, r.pool.liquidity)


def _model(pool: V3Pool, zfo: bool, amount: int, limit: int | None):
    try:
        return pool.swap(zfo, amount, limit), None
    except V3MathError as exc:
        return None, str(exc)


def _v3_chain(p: ChainProbe) -> tuple[dict, list[str]]:
    stats = {"swaps": 0, "pre": 0, "crossing": 0, "failing": 0, "exact_out": 0, "limit": 0}
    bad: list[str] = []
    for pool_m in p.v3_pools:
        pool = _read_v3(p, pool_m)
        rng = random.Random(f"{SEED}:v3:{p.name}:{pool_m['address']}")
        t0, t1 = pool_m["token0"], pool_m["token1"]
        bal = [int(r, 16) for r in p.rpc.batch([
            ("eth_call", [{"to": t, "data": "0x" + (selector("balanceOf(address)") + encode(["address"], [pool.address])).hex()},
                          "latest"]) for t in (t0, t1)])]
        # per direction: (input that drains the side paid out, that side's balance)
        scale = {z: (pool.swap(z, -bal[1 if z else 0]).amount0 if z else pool.swap(z, -bal[0]).amount1,
                     bal[1 if z else 0]) for z in (True, False)}
        cases, expect = [], []
        for _ in range(V3_PER_POOL):
            start, pre = pool, None
            if rng.random() < 0.55:
                pre = _random_swap(rng, pool, scale, pre=True)
                r, err = _model(pool, *pre)
                if err is None:
                    start = r.pool
            main = _random_swap(rng, start, scale, pre=False)
            pz, pa, pl = pre if pre else (False, 0, None)
            cases.append((pz, pa, 0 if pa == 0 else (pl if pl is not None else _default_limit(pz)),
                          main[0], main[1], main[2] if main[2] is not None else _default_limit(main[0])))
            expect.append((pre, main))
        results = []
        for res in p.calls("v3", [[pool.address, c] for c in _chunks(cases, 40)]):
            results.extend(res[0])
        for (pre, main), raw in zip(expect, results):
            where = f"{p.name} {pool_m['symbol0']}/{pool_m['symbol1']} fee {pool.fee}: pre={pre} main={main}"
            start = pool
            if raw[:4] == ERROR_SELECTOR or len(raw) % 32:
                # the pre swap reverted on chain
                r, err = _model(pool, *pre) if pre else (None, "no pre swap")
                if err is None:
                    bad.append(f"{where}: pre swap reverted on chain ({reason(raw)}), model {_state(r)}")
                continue
            pre_raw, main_raw = decode(["bytes", "bytes"], raw)
            if pre:
                stats["pre"] += 1
                r, err = _model(pool, *pre)
                got = decode(["int256", "int256", "uint160", "int24", "uint128"], pre_raw)
                if err is not None or _state(r) != got:
                    bad.append(f"{where}: pre swap chain {got} != model {err or _state(r)}")
                    continue
                start = r.pool
            stats["swaps"] += 1
            zfo, amount, limit = main
            stats["exact_out"] += amount < 0
            stats["limit"] += limit is not None
            r, err = _model(start, zfo, amount, limit)
            if len(main_raw) == 160:
                got = decode(["int256", "int256", "uint160", "int24", "uint128"], main_raw)
                if err is not None or _state(r) != got:
                    bad.append(f"{where}: chain {got} != model {err or _state(r)}")
                    continue
                stats["crossing"] += r.ticks_crossed > 0
                # the quote interface (no limit) says the same
                if limit is None:
                    t_in, t_out = (t0, t1) if zfo else (t1, t0)
                    paid_in, paid_out = (got[0], -got[1]) if zfo else (got[1], -got[0])
                    if amount > 0 and start.quote_exact_in(t_in, amount) != paid_out:
                        bad.append(f"{where}: quote_exact_in {start.quote_exact_in(t_in, amount)} != {paid_out}")
                    if amount < 0 and start.quote_exact_out(t_out, -amount) != paid_in:
                        bad.append(f"{where}: quote_exact_out {start.quote_exact_out(t_out, -amount)} != {paid_in}")
            else:
                stats["failing"] += 1
                why = reason(main_raw)
                if err is None or (why in V3_REASONS and why != err):
                    bad.append(f"{where}: chain reverted ({why!r}, {main_raw[:40].hex()}), model "
                               f"{err or _state(r)}")
    return stats, bad


def test_v3_swaps_agree_with_the_real_pool(onchain):
    res = per_chain(onchain, _v3_chain)
    stats = {k: sum(s[k] for s, _ in res.values()) for k in next(iter(res.values()))[0]}
    bad = [b for _, bs in res.values() for b in bs]
    assert not bad, f"{len(bad)} V3 disagreements ({stats}):\n" + "\n".join(bad[:20])
    # the sample really covers what it claims
    assert stats["swaps"] >= 0.9 * sum(len(p.v3_pools) for p in onchain.values()) * V3_PER_POOL, stats
    assert stats["swaps"] >= 10 * V3_PER_POOL, stats
    assert stats["pre"] >= 0.4 * stats["swaps"], stats
    assert stats["crossing"] >= 0.1 * stats["swaps"], stats
    assert stats["exact_out"] >= 0.3 * stats["swaps"], stats
    assert stats["limit"] >= 0.3 * stats["swaps"], stats
    assert stats["failing"] >= 10, stats


# ---- TickMath -------------------------------------------------------------------------------

def test_tick_math_agrees_with_the_real_tickmath(onchain):
    p = onchain["arbitrum"]
    rng = random.Random(f"{SEED}:tickmath")
    ticks = [MIN_TICK, MIN_TICK + 1, -1, 0, 1, MAX_TICK - 1]
    while len(ticks) < TICK_CASES:
        ticks.append(rng.randint(MIN_TICK, MAX_TICK - 1) if rng.random() < 0.7
                     else int(rng.choice((-1, 1)) * 2 ** rng.uniform(0, math.log2(MAX_TICK - 1))))
    prices = [MIN_SQRT_RATIO - 1, MIN_SQRT_RATIO, MIN_SQRT_RATIO + 1, MAX_SQRT_RATIO - 1, MAX_SQRT_RATIO]
    while len(prices) < TICK_CASES:
        if rng.random() < 0.5:
            prices.append(int(2 ** rng.uniform(math.log2(MIN_SQRT_RATIO), math.log2(MAX_SQRT_RATIO))))
        else:  # on a tick's ratio and one either side of it
            r = get_sqrt_ratio_at_tick(rng.randint(MIN_TICK, MAX_TICK))
            prices.append(r + rng.choice((-1, 0, 1)))
    prices = [min(x, (1 << 160) - 1) for x in prices]
    got_ratio = [r for c in _chunks(ticks, 200) for r in p.calls("sqrtRatioAtTick", [[p.fresh_pool, c]])[0][0]]
    got_tick = [r for c in _chunks(prices, 200) for r in p.calls("tickAtSqrtRatio", [[p.fresh_pool, c]])[0][0]]
    bad = []
    for t, raw in zip(ticks, got_ratio):
        if len(raw) != 64:
            bad.append(f"tick {t}: mint reverted {reason(raw)!r} {raw[:40].hex()}")
            continue
        _, amount1 = decode(["uint256", "uint256"], raw)
        if MAX_SQRT_RATIO - 1 - amount1 != get_sqrt_ratio_at_tick(t):
            bad.append(f"getSqrtRatioAtTick({t}): chain {MAX_SQRT_RATIO - 1 - amount1}, "
                       f"model {get_sqrt_ratio_at_tick(t)}")
    for x, raw in zip(prices, got_tick):
        try:
            want = get_tick_at_sqrt_ratio(x)
        except V3MathError as exc:
            want = str(exc)
        got = decode(["int24"], raw)[0] if len(raw) == 32 else reason(raw)
        if got != want:
            bad.append(f"getTickAtSqrtRatio({x}): chain {got!r}, model {want!r}")
    assert len(got_ratio) == len(got_tick) == TICK_CASES
    # the two ends, which the mint readout cannot reach, are the contract's constants
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    with pytest.raises(V3MathError):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    assert not bad, f"{len(bad)} TickMath disagreements:\n" + "\n".join(bad[:20])
