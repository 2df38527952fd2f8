"""engine/chain/poolbook.py, replica.py and drift.py on real anvil: logs in, exact state out.

Each test runs on the arbitrum chain inside evm_snapshot/evm_revert.  The chain's truth is read
back with load_pools at the book's head block (check_drift), quotes with an eth_call of the
devnet periphery's swap (what the pool really pays).
"""
from __future__ import annotations

import random

import pytest

from engine.arb import events as ev
from engine.chain.contracts import deploy, load
from engine.chain.drift import check_drift
from engine.chain.poolbook import PoolBook
from engine.chain.pools import PoolSpec, load_pools, specs_from_manifest
from engine.chain.replica import apply_record, dump_graph, load_graph
from engine.chain.rpc import RpcClient

CHAIN = "arbitrum"


class Net:
    """The arbitrum devnet chain for one test: rpc, web3, manifest, accounts, helpers."""

    def __init__(self, devnet):
        self.devnet = devnet
        self.w3 = devnet.w3(CHAIN)
        self.m = devnet.manifest["chains"][CHAIN]
        self.rpc = RpcClient(devnet.rpc_url(CHAIN))
        self.me = self.m["accounts"]["deployer"]
        self.trader = self.m["accounts"]["trader"]
        self.periphery = load("DevPeriphery").contract(self.w3, self.m["contracts"]["periphery"])
        self.v3 = [p for p in self.m["pools"] if p["kind"] == "v3"]

    def book(self, **kw) -> PoolBook:
        b = PoolBook(CHAIN, threshold_bps=50, **kw)
        loaded = load_pools(self.rpc, specs_from_manifest(self.m))
        assert not loaded.errors
        b.load(loaded)
        return b

    def block(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def logs(self, start: int, end: int | None = None, address=None) -> list[dict]:
        q = {"fromBlock": hex(start), "toBlock": hex(end if end is not None else self.block())}
        if address is not None:
            q["address"] = address
        return self.rpc.call("eth_getLogs", [q])

    def tx(self, fn, sender=None):
        h = fn.transact({"from": sender or self.me})
        r = self.w3.eth.wait_for_transaction_receipt(h, poll_latency=0.005)
        assert r["status"] == 1
        return r

    def pool_contract(self, address):
        return load("UniswapV3Pool").contract(self.w3, self.w3.to_checksum_address(address))


@pytest.fixture
def net(devnet):
    n = Net(devnet)
    snap = n.rpc.call("evm_snapshot")
    yield n
    assert n.rpc.call("evm_revert", [snap]) is True
    n.rpc.close()


def replay(book: PoolBook, logs: list[dict]) -> list[dict]:
    out = []
    for i, log in enumerate(logs):
        r = book.apply(log, t_origin=i)
        if r is not None:
            out.append(r)
    return out


def positions_churn(net: Net, rng: random.Random, n: int) -> dict:
    """n random V3 mints and burns by the deployer (who owns the devnet's positions): new ranges
    around and away from the price, partial burns, and full burns that clear ticks."""
    held: list[tuple[str, int, int, int]] = []
    counts = {"mint": 0, "burn": 0}
    for _ in range(n):
        if held and rng.random() < 0.45:
            addr, lo, hi, liq = held.pop(rng.randrange(len(held)))
            amt = liq if rng.random() < 0.5 else liq // 3
            net.tx(net.pool_contract(addr).functions.burn(lo, hi, amt))
            if amt < liq:
                held.append((addr, lo, hi, liq - amt))
            counts["burn"] += 1
            continue
        p = rng.choice(net.v3)
        sp = p["tick_spacing"]
        tick = net.pool_contract(p["address"]).functions.slot0().call()[1]
        lo = (tick // sp + rng.randint(-40, 5)) * sp
        hi = lo + sp * rng.randint(1, 60)
        liq = 10 ** rng.randint(6, 15)
        net.tx(net.periphery.functions.mintV3(p["address"], lo, hi, liq))
        held.append((p["address"].lower(), lo, hi, liq))
        counts["mint"] += 1
    return counts


def test_random_traffic_mints_and_burns_give_the_chains_state(net, devnet):
    from scripts.devnet import Traffic
    book = net.book()
    replica = load_graph(dump_graph(book.graph))            # a role's start: the snapshot
    start = book.head + 1
    traffic = Traffic(devnet.manifest, chains=[CHAIN], big_every=4, seed=11)
    rng = random.Random(5)
    swaps = 0
    churn = {"mint": 0, "burn": 0}
    for round_ in range(6):
        for _ in range(45):
            traffic.step()
            swaps += 1
        for k, v in positions_churn(net, rng, 8).items():
            churn[k] += v
    logs = net.logs(start)
    recs = replay(book, logs)
    # one state record per swap (V2: the Sync; the Swap after it is folded), one per mint/burn
    by_event = {e: sum(r["event"] == e for r in recs) for e in ("sync", "swap", "mint", "burn")}
    assert by_event["sync"] + by_event["swap"] == swaps, by_event
    assert by_event["mint"] == churn["mint"] and by_event["burn"] == churn["burn"], (by_event, churn)
    assert book.counts["v2_swap_folded"] == by_event["sync"]
    assert any(r["interrupt"] for r in recs) and not all(r["interrupt"] for r in recs)
    assert all(r["interrupt"] == (r["impact_bps"] >= 50) for r in recs)
    assert book.head == net.block()
    assert check_drift(book, net.rpc) == {}
    # the replica, fed the records, is the book
    for r in recs:
        assert apply_record(replica, r) is not None
    assert replica.pools == book.graph.pools
    # a V3 quote on the replica is what the pool pays, to the wei (crossing ticks too)
    qrng = random.Random(7)
    for p in net.v3:
        pool = replica.pools[p["address"].lower()]
        for _ in range(3):
            zfo = qrng.random() < 0.5
            token_in = pool.token0 if zfo else pool.token1
            amount = int(pool.liquidity * 10 ** qrng.uniform(-3, -0.5)) or 1
            chain_out = net.periphery.functions.swapV3(p["address"], zfo, amount, net.trader).call(
                {"from": net.trader})
            assert pool.quote_exact_in(token_in, amount) == chain_out
    # replaying the same logs again: every one a duplicate (or stale: older than the undo log)
    mine = [log for log in logs if log["address"].lower() in book.graph.pools]
    dropped = book.counts["duplicate"] + book.counts["stale"]
    assert replay(book, mine) == []
    assert book.counts["duplicate"] + book.counts["stale"] - dropped == len(mine)
    assert book.counts["duplicate"] > 0 and len(mine) == len(recs) + book.counts["v2_swap_folded"]


def test_revert_blocks_restores_the_state_exactly(net, devnet):
    from scripts.devnet import Traffic
    book = net.book()
    traffic = Traffic(devnet.manifest, chains=[CHAIN], seed=3)
    for _ in range(10):
        traffic.step()
    replay(book, net.logs(book.head + 1))
    fork = book.head
    before_pools, before_gross = dict(book.graph.pools), {a: dict(g) for a, g in book.gross.items()}
    replica = load_graph(dump_graph(book.graph))
    for _ in range(12):
        traffic.step()
    positions_churn(net, random.Random(2), 6)
    logs = net.logs(fork + 1)
    recs = replay(book, logs)
    assert recs and check_drift(book, net.rpc) == {}
    for r in recs:
        apply_record(replica, r)
    reverted = book.revert_blocks(from_block=fork + 1)
    assert len(reverted) == len(recs) and all(r["reverted"] for r in reverted)
    assert [(r["tx"], r["log_index"]) for r in reverted] == [(r["tx"], r["log_index"]) for r in recs][::-1]
    assert book.graph.pools == before_pools
    assert {a: g for a, g in book.gross.items() if g} == {a: g for a, g in before_gross.items() if g}
    for r in reverted:
        apply_record(replica, r)
    assert replica.pools == before_pools
    # the same blocks again (a reorg back): applied anew, and the book is the chain again
    assert len(replay(book, logs)) == len(recs)
    assert check_drift(book, net.rpc) == {}
    # revert by hash: the named block and every block above it
    top = max(int(log["blockNumber"], 16) for log in logs)
    mid = next(log["blockHash"] for log in logs if int(log["blockNumber"], 16) == top - 3)
    undone = book.revert_blocks([mid])
    assert {r["block"] for r in undone} == {int(log["blockNumber"], 16) for log in logs
                                            if int(log["blockNumber"], 16) >= top - 3}
    assert book.revert_blocks(["0x" + "00" * 32]) == []


def test_removed_log_is_undone(net, devnet):
    from scripts.devnet import Traffic
    book = net.book()
    before = dict(book.graph.pools)
    traffic = Traffic(devnet.manifest, chains=[CHAIN], seed=9)
    traffic.step()
    traffic.step()
    logs = net.logs(book.head + 1)
    recs = replay(book, logs)
    assert len(recs) == 2
    # the node says the first swap's logs are gone (and, with it, everything after on its pool)
    for log in reversed(logs):
        rec = book.apply({**log, "removed": True}, t_origin=0)
        if rec is not None:
            assert rec["reverted"] and rec["pool"] == log["address"].lower()
    assert book.graph.pools == before
    assert book.apply({**logs[0], "removed": True}, 0) is None      # nothing left to undo
    assert book.counts["removed_unknown"] >= 1


def test_mint_and_burn_follow_the_contract(net):
    """Mint inside and outside the price, then burn them whole: ticks appear and are cleared,
    `liquidity` moves only when the range holds the current tick."""
    book = net.book()
    p = next(p for p in net.v3 if p["fee"] == 3000)
    a, sp = p["address"].lower(), p["tick_spacing"]
    pool = book.graph.pools[a]
    t = pool.tick
    inside = ((t // sp - 2) * sp, (t // sp + 3) * sp)
    outside = ((t // sp + 100) * sp, (t // sp + 104) * sp)
    for lo, hi in (inside, outside):
        net.tx(net.periphery.functions.mintV3(p["address"], lo, hi, 10 ** 12))
    recs = replay(book, net.logs(book.head + 1, address=p["address"]))
    assert [r["event"] for r in recs] == ["mint", "mint"]
    assert recs[0]["delta"] == {"tick_lower": inside[0], "tick_upper": inside[1], "liquidity": str(10 ** 12)}
    new = book.graph.pools[a]
    assert new.liquidity == pool.liquidity + 10 ** 12
    assert new.ticks[outside[0]] == 10 ** 12 and new.ticks[outside[1]] == -10 ** 12
    assert check_drift(book, net.rpc, [a]) == {}
    net.tx(net.pool_contract(a).functions.burn(*outside, 0))   # a poke: no state change
    for lo, hi in (inside, outside):
        net.tx(net.pool_contract(a).functions.burn(lo, hi, 10 ** 12))
    recs = replay(book, net.logs(book.head + 1, address=p["address"]))
    assert [r["event"] for r in recs] == ["burn", "burn"] and book.counts["burn_poke"] == 1
    assert dict(recs[1]["ticks"]) == {outside[0]: None, outside[1]: None}
    assert book.graph.pools[a] == pool
    assert check_drift(book, net.rpc, [a]) == {}


def test_new_pools_from_the_factories_join_the_graph(net):
    book = net.book()
    replica = load_graph(dump_graph(book.graph))
    fresh = [deploy(net.w3, "DevToken", s, s, 18, sender=net.me) for s in ("NEWA", "NEWB")]
    for c in fresh:
        net.tx(c.functions.mint(net.me, 10 ** 30))
        net.tx(c.functions.approve(net.periphery.address, (1 << 256) - 1))
    ta, tb = sorted((c.address for c in fresh), key=lambda x: int(x, 16))
    v2f = next(d for d in net.m["dexes"] if d["kind"] == "v2")
    v3f = next(d for d in net.m["dexes"] if d["kind"] == "v3")
    net.tx(load("UniswapV2Factory").contract(net.w3, v2f["factory"]).functions.createPair(ta, tb))
    net.tx(load("UniswapV3Factory").contract(net.w3, v3f["factory"]).functions.createPool(ta, tb, 500))
    # the notices come first; the caller loads each new pool at its creation block
    notices = replay(book, net.logs(book.head + 1))
    assert [n["type"] for n in notices] == ["created", "created"]
    assert [n["kind"] for n in notices] == ["v2", "v3"]
    for n in notices:
        rec = book.load_created(net.rpc, n, t_origin=5)
        assert rec["event"] == "created" and rec["block_hash"] == n["block_hash"]
        assert rec["pool"] == n["pool"] and rec["t_origin"] == 5
        apply_record(replica, rec)
    # a notice for something that is not a pool: counted, with its reason
    assert book.load_created(net.rpc, {**notices[0], "pool": ta.lower(), "kind": None}) is None
    assert "neither" in book.load_errors[ta.lower()] and book.counts["created_load_failed"] == 1
    pair, v3pool = (n["pool"] for n in notices)
    # then they trade: liquidity, an Initialize, a mint, swaps
    for c in fresh:
        net.tx(c.functions.transfer(net.w3.to_checksum_address(pair), 10 ** 21))
    net.tx(load("UniswapV2Pair").contract(net.w3, net.w3.to_checksum_address(pair)).functions.mint(net.me))
    net.tx(net.pool_contract(v3pool).functions.initialize(1 << 96))
    net.tx(net.periphery.functions.mintV3(net.w3.to_checksum_address(v3pool), -600, 600, 10 ** 20))
    net.tx(net.periphery.functions.swapV2(net.w3.to_checksum_address(pair), ta, 10 ** 18, 30, net.me))
    net.tx(net.periphery.functions.swapV3(net.w3.to_checksum_address(v3pool), True, 10 ** 18, net.me))
    recs = replay(book, net.logs(book.head + 1))
    assert [r["event"] for r in recs if r["pool"] == v3pool] == ["initialize", "mint", "swap"]
    assert check_drift(book, net.rpc) == {}
    for r in recs:
        apply_record(replica, r)
    assert replica.pools == book.graph.pools and pair in replica.by_token[ta.lower()]
    # a reorg that drops the creation blocks drops the pools with their trades, in the book and
    # (through the reverted "created" records) in a replica; the head comes down with it
    first = min(n["block"] for n in notices)
    undone = book.revert_blocks(from_block=first)
    gone = [r for r in undone if r["event"] == "created"]
    assert {r["pool"] for r in gone} == {pair, v3pool} and all(r["reverted"] for r in undone)
    assert pair not in book.graph and v3pool not in book.graph and book.head == first - 1
    assert ta.lower() not in book.graph.by_token and book.counts["created_reverted"] == 2
    for r in undone:
        apply_record(replica, r)
    assert replica.pools == book.graph.pools and ta.lower() not in replica.by_token


def test_bad_logs_are_counted_never_raised(net, devnet):
    from scripts.devnet import Traffic
    book = net.book()
    before = dict(book.graph.pools)
    Traffic(devnet.manifest, chains=[CHAIN], seed=1).step()
    good = next(log for log in net.logs(book.head + 1)
                if log["topics"][0] in (ev.SYNC_TOPIC, ev.V3_SWAP_TOPIC))
    stranger = "0x" + "12" * 20
    bad = [
        ({**good, "data": good["data"][:-6]}, "bad_data"),                  # truncated
        ({**good, "data": "0x" + "zz" * 64}, "bad_data"),                   # not hex
        ({**good, "topics": ["0x" + "ee" * 32]}, "unknown_topic"),
        ({**good, "topics": []}, "unknown_topic"),
        ({**good, "address": stranger}, "unwatched"),
        ({k: v for k, v in good.items() if k != "blockHash"}, "malformed"),
        ({**good, "logIndex": "twelve"}, "malformed"),
        ({**good, "topics": "0x1c41"}, "malformed"),
        ({**good, "blockNumber": None}, "malformed"),
        ({**good, "data": 12345}, "malformed"),
        ({**good, "topics": [7]}, "malformed"),
        ({**good, "blockNumber": "0x1"}, "stale"),                          # older than the load
        ("not a log", "malformed"),
    ]
    for log, reason in bad:
        n = book.counts[reason]
        assert book.apply(log, 0) is None, reason
        assert book.counts[reason] == n + 1, (reason, dict(book.counts))
    assert book.graph.pools == before
    assert book.apply(good, 0) is not None                              # the real one still applies
    assert book.apply(good, 0) is None and book.counts["duplicate"] == 1
    # a pool with no code is a per-pool load error, never a crash of the load
    got = load_pools(net.rpc, specs_from_manifest(net.m) + [PoolSpec(stranger)])
    assert set(got.errors) == {stranger} and len(got.pools) == len(net.m["pools"])
    stats = book.statistics()
    assert stats["pools"] == len(net.m["pools"]) and stats["bad_data"] == 2


def test_prune_bounds_memory_and_reorg_depth(net, devnet):
    from scripts.devnet import Traffic
    book = net.book(reorg_depth=3)
    traffic = Traffic(devnet.manifest, chains=[CHAIN], seed=4)
    for _ in range(8):
        traffic.step()
    logs = net.logs(book.head + 1)
    replay(book, logs)
    assert book.statistics()["blocks_held"] <= 4
    assert book.pruned_through == book.head - 3
    book.prune(book.head)
    assert book.statistics()["blocks_held"] == 0
    assert replay(book, logs) == []                                     # all stale now
    assert book.revert_blocks(from_block=0) == []


def test_replica_snapshot_and_bad_records(net):
    book = net.book()
    g = load_graph(dump_graph(book.graph))
    assert g.pools == book.graph.pools and g.by_token == book.graph.by_token
    assert len(dump_graph(book.graph)) < 4096                          # compact: 18 pools
    for bad in (b"", b"junk", dump_graph(book.graph)[:-3]):
        with pytest.raises(ValueError, match="corrupt"):
            load_graph(bad)
    a = next(iter(g.pools))
    with pytest.raises(ValueError, match=a):
        apply_record(g, {"type": "pool", "pool": a, "event": "sync", "state": {"reserve0": "x"}})
    assert g.pools == book.graph.pools                                 # unchanged by it
    assert apply_record(g, {"type": "pool", "pool": "0x" + "99" * 20, "event": "sync",
                            "state": {}}) is None                      # a pool it does not hold
    assert apply_record(g, {"type": "created", "pool": a}) is None


def test_load_through_a_dead_endpoint_is_per_pool_errors(net):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = RpcClient(f"http://127.0.0.1:{port}")
    got = load_pools(dead, specs_from_manifest(net.m), block=1)
    assert not got.pools and len(got.errors) == len(net.m["pools"])
    assert all("refused" in why.lower() for why in got.errors.values())


@pytest.mark.parametrize("depth", [1, 3])
def test_anvil_reorg_with_other_swaps(net, devnet, depth):
    """anvil_reorg replaces the last `depth` blocks with different swaps: the blocks whose hash
    changed are reverted, the new ones applied, and the book (and a replica) is the chain."""
    from scripts.devnet import Traffic
    book = net.book()
    replica = load_graph(dump_graph(book.graph))
    traffic = Traffic(devnet.manifest, chains=[CHAIN], big_every=3, seed=20 + depth)
    for _ in range(depth + 3):
        traffic.step()
    first = replay(book, net.logs(book.head + 1))
    for r in first:
        apply_record(replica, r)
    old_head = book.head
    # the replacement blocks: other swaps, by the deployer (plain requests; the node signs)
    rng = random.Random(depth)
    txs = []
    for i in range(depth):
        p = rng.choice(net.m["pools"])
        state = book.graph.pools[p["address"].lower()]
        if p["kind"] == "v2":
            fn = net.periphery.functions.swapV2(p["address"], p["token0"], state.reserve0 // 500, 30, net.me)
        else:
            fn = net.periphery.functions.swapV3(p["address"], rng.random() < 0.5, state.liquidity // 5000, net.me)
        txs.append([{"from": net.me, "to": net.periphery.address, "data": fn._encode_transaction_data(),
                     "gas": hex(2_000_000)}, i])
    assert net.rpc.call("anvil_reorg", [depth, txs]) is None
    # what the ingress does: compare the held hashes to the chain's, revert from the first change
    changed = [n for n, hs in sorted(book.block_hashes().items())
               if net.rpc.call("eth_getBlockByNumber", [hex(n), False])["hash"] not in hs]
    assert changed and min(changed) == old_head - depth + 1
    reverted = book.revert_blocks(from_block=min(changed))
    assert reverted and all(r["reverted"] for r in reverted)
    assert {r["block"] for r in reverted} <= set(range(old_head - depth + 1, old_head + 1))
    new = replay(book, net.logs(min(changed)))
    mined = [net.rpc.call("eth_getTransactionReceipt", [h])
             for n in range(min(changed), net.block() + 1)
             for h in net.rpc.call("eth_getBlockByNumber", [hex(n), False])["transactions"]]
    assert [int(r["status"], 16) for r in mined] == [1] * depth, mined
    assert len(new) == depth                                     # one record per replacement swap
    assert check_drift(book, net.rpc) == {}
    for r in reverted + new:
        apply_record(replica, r)
    assert replica.pools == book.graph.pools


def test_drift_is_found_and_resync_repairs_it(net, devnet):
    """Logs the book never saw (a gap) show up as drift, pool by pool; a resync repairs the book
    and, through its records, a replica."""
    from scripts.devnet import Traffic
    book = net.book()
    replica = load_graph(dump_graph(book.graph))
    traffic = Traffic(devnet.manifest, chains=[CHAIN], seed=8)
    for _ in range(6):
        traffic.step()
    positions_churn(net, random.Random(1), 3)
    logs = net.logs(book.head + 1)
    missed = {log["address"].lower() for log in logs[:len(logs) // 2]
              if log["address"].lower() in book.graph.pools}
    kept = [log for log in logs if log["address"].lower() not in missed]
    for r in replay(book, kept):
        apply_record(replica, r)
    book.head = net.block()           # as if every block had been seen
    drift = check_drift(book, net.rpc)
    assert missed and set(drift) == missed, (missed, drift)
    assert all(f"at block {book.head}" in why for why in drift.values())
    assert set(check_drift(book, net.rpc, sample=len(book.graph))) == missed   # a sample of all
    recs = book.resync(load_pools(net.rpc, [PoolSpec(a) for a in drift], book.head))  # kind, dex: asked
    assert {r["pool"] for r in recs} == missed and all(r["event"] == "resync" for r in recs)
    assert check_drift(book, net.rpc) == {}
    for r in recs:
        apply_record(replica, r)
    assert replica.pools == book.graph.pools
    assert replay(book, logs) == []                                     # the gap's logs: stale now


def test_removed_log_before_a_later_one_undoes_both(net):
    """A node may send the removed logs oldest first: undoing the first of two swaps of a pool
    also undoes the second (its block is gone too); the second's removal then finds nothing."""
    book = net.book()
    p = next(p for p in net.v3 if p["fee"] == 500)
    a = p["address"].lower()
    before = book.graph.pools[a]
    for zfo in (True, False):
        net.tx(net.periphery.functions.swapV3(p["address"], zfo, before.liquidity // 10 ** 4, net.me))
    logs = net.logs(book.head + 1, address=p["address"])
    recs = replay(book, logs)
    assert [r["event"] for r in recs] == ["swap", "swap"] and book.graph.pools[a] != before
    rec = book.apply({**logs[0], "removed": True}, 0)
    assert rec["reverted"] and (rec["tx"], rec["log_index"]) == (recs[0]["tx"], recs[0]["log_index"])
    assert rec["state"] == {"sqrt_price_x96": str(before.sqrt_price_x96),
                            "liquidity": str(before.liquidity), "tick": before.tick}
    assert book.graph.pools[a] == before
    assert book.apply({**logs[1], "removed": True}, 0) is None and book.counts["removed_unknown"] == 1
    assert len(replay(book, logs)) == 2 and check_drift(book, net.rpc, [a]) == {}
