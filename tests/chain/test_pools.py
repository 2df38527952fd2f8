"""engine/chain/pools.py: every manifest pool read from real anvil equals what the chain holds.

The expected values come by another path: web3 contract calls for the state, and the pools'
own Mint/Burn logs since genesis for the tick tables (the ticks the devnet created).
"""
from __future__ import annotations

import pytest

from engine.arb import events as ev
from engine.arb.v2 import V2Pool
from engine.arb.v3 import V3Pool
from engine.chain.contracts import load
from engine.chain.pools import PoolSpec, identify_kind, load_pools, specs_from_manifest, word_range
from engine.chain.rpc import RpcClient


@pytest.fixture
def rpcs(devnet):
    cs = {n: RpcClient(devnet.rpc_url(n)) for n in devnet.chains}
    yield cs
    for c in cs.values():
        c.close()


def tables_from_logs(rpc: RpcClient, address: str, to_block: int) -> tuple[dict, dict]:
    """(tick -> liquidityNet, tick -> liquidityGross) summed from the pool's Mint/Burn logs."""
    logs = rpc.call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(to_block), "address": address,
                                     "topics": [[ev.V3_MINT_TOPIC, ev.V3_BURN_TOPIC]]}])
    net: dict[int, int] = {}
    gross: dict[int, int] = {}
    for log in logs:
        e = ev.decode(log["topics"], log["data"])
        d = e.amount if isinstance(e, ev.V3Mint) else -e.amount
        for t, dn in ((e.tick_lower, d), (e.tick_upper, -d)):
            net[t] = net.get(t, 0) + dn
            gross[t] = gross.get(t, 0) + d
    live = {t for t, g in gross.items() if g}
    assert logs, f"no Mint logs for {address}"
    return {t: net[t] for t in live}, {t: gross[t] for t in live}


def test_every_manifest_pool_matches_the_chain(devnet, rpcs):
    pair_art, pool_art = load("UniswapV2Pair"), load("UniswapV3Pool")
    seen = {"v2": 0, "v3": 0, "ticks": 0}
    for name in devnet.chains:
        m = devnet.manifest["chains"][name]
        w3 = devnet.w3(name)
        got = load_pools(rpcs[name], specs_from_manifest(m))
        assert not got.errors, got.errors
        assert len(got.pools) == len(m["pools"])
        for p in m["pools"]:
            a = p["address"].lower()
            mine = got.pools[a]
            assert (mine.token0, mine.token1) == (p["token0"].lower(), p["token1"].lower())
            assert mine.dex == p["dex"] and mine.kind.value == p["kind"]
            if p["kind"] == "v2":
                c = pair_art.contract(w3, p["address"])
                r0, r1, _ = c.functions.getReserves().call(block_identifier=got.block)
                assert isinstance(mine, V2Pool)
                assert (mine.reserve0, mine.reserve1, mine.fee_bps) == (r0, r1, 30)
                seen["v2"] += 1
                continue
            c = pool_art.contract(w3, p["address"])
            slot0 = c.functions.slot0().call(block_identifier=got.block)
            assert isinstance(mine, V3Pool)
            assert (mine.sqrt_price_x96, mine.tick) == (slot0[0], slot0[1])
            assert mine.liquidity == c.functions.liquidity().call(block_identifier=got.block)
            assert (mine.fee, mine.tick_spacing) == (p["fee"], p["tick_spacing"])
            net, gross = tables_from_logs(rpcs[name], a, got.block)
            assert dict(mine.ticks) == net and got.gross[a] == gross
            assert len(net) == 6                     # the devnet's three ranges
            seen["v3"] += 1
            seen["ticks"] += len(net)
    assert seen["v2"] >= 10 and seen["v3"] >= 10, seen


def test_kind_is_read_from_the_chain_and_bad_pools_are_per_pool_errors(devnet, rpcs):
    m = devnet.manifest["chains"]["base"]
    rpc = rpcs["base"]
    v2 = next(p["address"] for p in m["pools"] if p["kind"] == "v2").lower()
    v3 = next(p["address"] for p in m["pools"] if p["kind"] == "v3").lower()
    token = m["tokens"]["USDC"]["address"].lower()
    nobody = "0x" + "ab" * 20
    assert identify_kind(rpc, v2) == "v2" and identify_kind(rpc, v3) == "v3"
    with pytest.raises(ValueError, match="no contract"):
        identify_kind(rpc, nobody)
    with pytest.raises(ValueError, match="neither a V2 pair nor a V3 pool"):
        identify_kind(rpc, token)
    got = load_pools(rpc, [PoolSpec(v2), PoolSpec(v3), PoolSpec(token), PoolSpec(nobody)])
    assert set(got.pools) == {v2, v3}
    assert "no contract" in got.errors[nobody] and "neither" in got.errors[token]
    # told the wrong kind: a V2 pair has no fee(), a token no getReserves(); "v4" is not a kind
    wrong = load_pools(rpc, [PoolSpec(v2, kind="v3"), PoolSpec(v3, kind="v4"), PoolSpec(token, kind="v2")])
    assert not wrong.pools
    assert "reverted" in wrong.errors[v2] and "v4" in wrong.errors[v3] and "reverted" in wrong.errors[token]


def test_word_range_covers_every_usable_tick():
    for spacing in (1, 10, 60, 200):
        r = word_range(spacing)
        assert r.start == (-887272 // spacing) >> 8 and r.stop - 1 == (887272 // spacing) >> 8
    assert len(word_range(1)) == 6932 and len(word_range(60)) == 116


def test_v2_fee_comes_from_the_dex_table(devnet, rpcs):
    m = devnet.manifest["chains"]["polygon"]
    a = next(p["address"] for p in m["pools"] if p["kind"] == "v2").lower()
    got = load_pools(rpcs["polygon"], [PoolSpec(a, dex="quickswap")],
                     fee_by_dex={"quickswap": 25})
    assert got.pools[a].fee_bps == 25 and got.pools[a].dex == "quickswap"
    told = load_pools(rpcs["polygon"], [PoolSpec(a, "v2", "other", fee_bps=17)], fee_by_dex={"other": 25})
    assert told.pools[a].fee_bps == 17                              # the spec's own fee wins
    plain = load_pools(rpcs["polygon"], [PoolSpec(a)])
    assert plain.pools[a].fee_bps == 30                             # the real pair's 0.3 %
