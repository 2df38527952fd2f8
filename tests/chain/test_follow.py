"""The chain follower on real anvil over WebSocket: every log once, across cuts, reorgs, failover
and bad endpoints (the pool book here is the stand-in of ingresshelp; test_monitor.py runs the
real one inside the role)."""
from __future__ import annotations

import threading

import pytest

from engine import config
from engine.chain.follow import Follower, Prober

from taskhelp import ListLog
from ingresshelp import Driver, GarbageServer, Proxy, StandInBook, chain_logs, own_devnet




def settings(net, chain: str, ws: list[str], **over) -> dict:
    cfg = config.from_dict({"chains": {chain: {"ws": ws, **over}},
                            "roles": {"a": {"kind": "roles.agents:Agent"}}})
    n = cfg.networks[chain]
    m = net.manifest["chains"][chain]
    n["pools"] = [p["address"].lower() for p in m["pools"]]
    n["request_timeout"] = over.get("request_timeout", 3.0)
    return n


def follower(net, chain, ws, **over):
    book = StandInBook()
    log = ListLog()
    f = Follower(chain, settings(net, chain, ws, **over), book, publish=book.published.extend,
                 log=log)
    p = Prober(f)
    d = Driver({"follow": (f.run, 0.0), "probe": (p.run, 0.5)})
    return f, book, d, p, log


devnet = pytest.fixture(scope="module")(own_devnet)   # swaps stay out of the session devnet


def traffic(devnet, chain, n, seed=1, between=None):
    from scripts.devnet import Traffic
    t = Traffic(devnet.manifest, rate=1000, big_every=5, seed=seed, chains=[chain])
    for i in range(n):
        t.step()
        if between:
            between(i)


def run_with_traffic(d, devnet, chain, swaps, seed=1, between=None, until=None):
    """Swap in a thread while the follower runs; True if `until` came true meanwhile."""
    th = threading.Thread(target=traffic, args=(devnet, chain, swaps, seed, between))
    th.start()
    met = False
    while th.is_alive():
        met = d.run(0.2, until) if until else d.run(0.2)
        if met and until:
            break
    th.join()
    return met


def settle(d, f, book, w3, pools):
    """Run until the book holds exactly the chain's logs (or time out); return both sets."""
    want = chain_logs(w3, pools, f.base)
    d.run(30, until=lambda: book.keys() == want and f.active is not None)
    return book.keys(), want


def published_once(book) -> bool:
    keys = [(r["block_hash"], r["tx"], r["log_index"]) for r in book.published if not r["reverted"]]
    return len(keys) == len(set(keys))


def test_every_swap_log_once(devnet):
    chain = "base"
    f, book, d, p, log = follower(devnet, chain, [devnet.ws_url(chain)])
    try:
        assert d.run(20, until=lambda: f.active is not None), f.statistics()
        run_with_traffic(d, devnet, chain, 15)
        have, want = settle(d, f, book, devnet.w3(chain), f.addresses)
        assert len(want) >= 15 and have == want
        assert published_once(book)
        assert f.counts["reconnects"] == 0 and not d.errors
    finally:
        p.close()


def test_cut_mid_stream_no_log_missed_or_doubled(devnet):
    chain = "polygon"
    proxy = Proxy(devnet.manifest["chains"][chain]["port"])
    f, book, d, p, log = follower(devnet, chain, [proxy.url])
    try:
        assert d.run(20, until=lambda: f.active is not None), f.statistics()
        run_with_traffic(d, devnet, chain, 40, seed=2,
                         between=lambda i: proxy.cut() if i % 6 == 5 else None)
        have, want = settle(d, f, book, devnet.w3(chain), f.addresses)
        assert proxy.cuts >= 6 and f.counts["reconnects"] >= 1
        assert have == want, (len(have), len(want))
        assert published_once(book)
        assert not d.errors
    finally:
        p.close()
        proxy.close()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_reorg_by_hashes(devnet, depth):
    chain = "arbitrum"
    w3 = devnet.w3(chain)
    f, book, d, p, log = follower(devnet, chain, [devnet.ws_url(chain)])
    try:
        assert d.run(20, until=lambda: f.active is not None)
        run_with_traffic(d, devnet, chain, 6, seed=depth)
        settle(d, f, book, w3, f.addresses)
        before = book.keys()
        # replace the last `depth` blocks by blocks holding other swaps (a reorg anvil does
        # not announce with removed: true)
        from engine.chain.contracts import load
        m = devnet.manifest["chains"][chain]
        periph = load("DevPeriphery").contract(w3, m["contracts"]["periphery"])
        pool = next(p for p in m["pools"] if p["kind"] == "v2")
        txs = [[{"from": m["accounts"]["trader"], "to": m["contracts"]["periphery"],
                 "gas": hex(500_000),
                 "data": periph.functions.swapV2(pool["address"], pool["token0"], 10 ** 15 * (k + 1),
                                                 pool["fee"], m["accounts"]["trader"]
                                                 )._encode_transaction_data()}, k]
               for k in range(depth)]
        d.run(1.0)
        r = w3.provider.make_request("anvil_reorg", [depth, txs])
        assert "error" not in r, r
        have, want = settle(d, f, book, w3, f.addresses)
        assert have == want
        assert f.counts["reorgs"] >= 1 and f.counts["reverted"] >= 1
        gone = before - have
        assert gone, "the reorg dropped none of the logs held"
        reverted = {(r["block_hash"], r["tx"], r["log_index"]) for r in book.published if r["reverted"]}
        assert gone <= reverted      # every dropped log was published as reverted
    finally:
        p.close()


def test_bad_endpoints_are_survived(devnet):
    chain = "base"
    garbage = GarbageServer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    junk_ws = GarbageServer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n\x81\x03abc")
    dead = "ws://127.0.0.1:9"
    wrong_chain = devnet.ws_url("polygon")
    f, book, d, p, log = follower(devnet, chain, [dead, garbage.url, junk_ws.url, wrong_chain,
                                                  devnet.ws_url(chain)], retry_max=1.0)
    try:
        assert d.run(30, until=lambda: f.active is not None and f.active.order == 4), \
            f.statistics()
        run_with_traffic(d, devnet, chain, 5)
        have, want = settle(d, f, book, devnet.w3(chain), f.addresses)
        assert have == want
        st = {e["url"]: e for e in f.statistics()["endpoints"]}
        assert st[wrong_chain]["state"] == "wrong-chain"
        assert all(st[u]["errors"] >= 1 for u in (dead, garbage.url, junk_ws.url, wrong_chain))
        assert not d.errors
    finally:
        p.close()
        garbage.close()
        junk_ws.close()


def test_failover_and_back_between_two_proxies(devnet):
    chain = "polygon"
    port = devnet.manifest["chains"][chain]["port"]
    a, b = Proxy(port), Proxy(port)
    # request_timeout well above the lagging proxy's round trip (1.5 s each way): a must be
    # demoted for its lag, not time out first (it did, once, on a loaded machine)
    f, book, d, p, log = follower(devnet, chain, [a.url, b.url], lag_blocks=3, request_timeout=8.0)
    try:
        assert d.run(20, until=lambda: f.active is not None and f.active.url == a.url)
        a.down = True
        a.cut()
        run_with_traffic(d, devnet, chain, 6, seed=5)
        assert d.run(20, until=lambda: f.active is not None and f.active.url == b.url)
        a.down = False     # a is healthy again: the preferred endpoint comes back
        assert d.run(30, until=lambda: f.active is not None and f.active.url == a.url), \
            f.statistics()
        a.delay = 1.5      # now a lags: b takes over once a is lag_blocks behind
        assert run_with_traffic(d, devnet, chain, 30, seed=6,
                                until=lambda: f.active is not None and f.active.url == b.url), \
            f.statistics()
        a.delay = 0.0
        have, want = settle(d, f, book, devnet.w3(chain), f.addresses)
        assert have == want and published_once(book)
        assert f.counts["failovers"] >= 2
    finally:
        p.close()
        a.close()
        b.close()


def test_lying_node_bad_logs_are_counted_never_fatal():
    """Truncated log data, an unknown topic, a log of a pool we do not hold, a notification of
    no subscription, a frame that is not JSON: counted, logged, and the follower goes on."""
    import orjson

    from engine.chain.follow import TOPICS
    from engine.chain.poolbook import PoolBook
    from ingresshelp import LyingNode
    pool = "0x" + "ab" * 20

    def log(topic, data, address=pool, index=0):
        return orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {
            "subscription": "0x" + "aa" * 16, "result": {
                "address": address, "topics": [topic], "data": data, "blockNumber": "0x11",
                "blockHash": "0x" + "12" * 32, "transactionHash": "0x" + "13" * 32,
                "logIndex": hex(index), "removed": False}}}).decode()
    pushes = [log(TOPICS[0], "0x1234", index=0),                 # Sync with truncated data
              log("0x" + "77" * 32, "0x" + "00" * 64, index=1),  # unknown topic
              log(TOPICS[0], "0x" + "00" * 64, address="0x" + "cd" * 20, index=2),  # not ours
              orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                            "params": {"subscription": "0xdead", "result": {}}}).decode(),
              log(TOPICS[0], "0x" + "00" * 64, index=3)[:-7],    # cut off mid-JSON
              ]
    node = LyingNode(8453, pushes)
    s = {"ws": [node.url], "rpc": [], "pools": [pool], "factories": [], "chain_id": 8453,
         "threshold_bps": 50, "reorg_depth": 8, "lag_blocks": 3, "backfill_blocks": 100,
         "request_timeout": 2.0, "retry_max": 0.5}
    book = PoolBook("base", reorg_depth=8)
    published = []
    f = Follower("base", s, book, publish=published.extend, log=ListLog())
    d = Driver({"follow": (f.run, 0.0)})
    try:
        assert d.run(20, until=lambda: f.counts["bad"] >= 2 and f.counts["logs"] >= 3), \
            (f.statistics(), book.statistics())
        st = book.statistics()
        assert st.get("bad_data", 0) + st.get("malformed", 0) >= 1
        assert st.get("unknown_topic", 0) >= 1 and st.get("unwatched", 0) >= 1
        assert published == [] and not d.errors
        assert f.active is not None and node.connections == 1    # still following that node
    finally:
        node.close()


def test_an_endpoint_that_goes_back_counts_as_behind():
    """A node restarted on a shorter chain reports a lower head: the follower takes it as it is,
    so that node is lagging (demoted, not chosen) instead of keeping its old height."""
    s = {"ws": ["ws://a", "ws://b"], "rpc": [], "pools": [], "factories": [], "chain_id": 1,
         "threshold_bps": 50, "reorg_depth": 8, "lag_blocks": 3, "backfill_blocks": 100,
         "request_timeout": 2.0, "retry_max": 0.5}
    f = Follower("base", s, None, publish=list, log=ListLog(), clock=lambda: 100.0)
    a, b = f.endpoints
    a.good(100.0, 500, 1.0)
    b.good(100.0, 500, 1.0)
    assert f.pick(100.0) is a and not f.lagging(a)
    a.good(100.0, 120, 1.0)              # a came back from a restart, far behind
    assert a.head == 120 and f.lagging(a) and f.pick(100.0) is b


def test_a_block_another_path_applied_that_the_chain_left_is_undone(devnet):
    """A Moralis delivery of an unconfirmed block can reach the book before the follower knows
    that height; if the chain then replaces the block (anvil_reorg while the follower is cut
    off, so it never sees the first one), the follower finds the book's block orphaned when it
    holds the node's hash for that height: undone (published as reverted), and the book ends
    equal to the chain."""
    chain = "base"
    w3 = devnet.w3(chain)
    proxy = Proxy(devnet.manifest["chains"][chain]["port"])
    f, book, d, p, log = follower(devnet, chain, [proxy.url])
    try:
        assert d.run(20, until=lambda: f.active is not None), f.statistics()
        run_with_traffic(d, devnet, chain, 3, seed=11)
        settle(d, f, book, w3, f.addresses)
        proxy.down = True
        proxy.cut()
        start = w3.eth.block_number + 1
        traffic(devnet, chain, 1, seed=12)
        fork_logs = w3.provider.make_request("eth_getLogs", [{
            "fromBlock": hex(start), "toBlock": "latest", "address": f.addresses}])["result"]
        assert fork_logs
        for lg in fork_logs:                  # what the receiver hands the monitor's book
            assert book.apply(lg, 0) is not None
        depth = w3.eth.block_number - start + 1
        r = w3.provider.make_request("anvil_reorg", [depth, []])   # the chain leaves them
        assert "error" not in r, r
        proxy.down = False
        have, want = settle(d, f, book, w3, f.addresses)
        assert have == want
        gone = {(lg["blockHash"], lg["transactionHash"], int(lg["logIndex"], 16)) for lg in fork_logs}
        assert not gone & have
        assert f.counts["orphaned_blocks"] >= 1
        reverted = {(r["block_hash"], r["tx"], r["log_index"]) for r in book.published if r["reverted"]}
        assert gone <= reverted
        assert any(m == "blocks another path brought are not the node's: undone"
                   for _, m, _ in log.lines)
    finally:
        p.close()
        proxy.close()
