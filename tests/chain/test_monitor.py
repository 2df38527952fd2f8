"""The chain monitor role in a real engine on the devnet: every swap one record, every swap of
0.5 % or more exactly one interrupt, the state equal to the chain's, an anvil stopped and
started again survived, bad pools counted."""
from __future__ import annotations

import json

import pytest

from engine.chain.pools import PoolSpec, load_pools
from engine.chain.replica import load_graph
from engine.chain.rpc import RpcClient
from enginehelp import agent
from ingresshelp import own_devnet
from metricshelp import free_port, scrape, value


devnet = pytest.fixture(scope="module")(own_devnet)   # swaps stay out of the session devnet


def roles(chain: str) -> dict:
    return {f"monitor-{chain}": {"kind": "roles.monitor:ChainMonitor", "chains": [chain]},
            "spot": agent([chain]),
            "exec": {**agent([chain]), "kind": "roles.agents:Executor", "subscribe": False,
                     "inbox": "interrupt"}}


def info(e, role: str) -> dict:
    r = e.roles().get(role) or {}
    return ((r.get("info") or {}).get("chains") or {})


def feed(e, chain: str) -> dict:
    return info(e, f"monitor-{chain}").get(chain) or {}


def read_snapshot(e, chain: str):
    raw = (e.run_dir / f"graph.{chain}.snap").read_bytes()
    head, _, body = raw.partition(b"\n")
    return json.loads(head), load_graph(body)


def graph_differences(graph, rpc_url: str, block: int) -> list:
    assert len(graph) > 0, "an empty graph"
    """What differs between a graph and the chain at `block` (empty: equal)."""
    chain = load_pools(RpcClient(rpc_url), [PoolSpec(a, p.kind.value) for a, p in graph.pools.items()],
                       block)
    out = [f"{a}: {why}" for a, why in chain.errors.items()]
    for a, onchain in chain.pools.items():
        mine = graph.pools[a]
        for f in ("reserve0", "reserve1", "sqrt_price_x96", "liquidity", "tick"):
            if getattr(mine, f, None) != getattr(onchain, f, None):
                out.append(f"{a}: {f}")
        if dict(getattr(mine, "ticks", {})) != dict(getattr(onchain, "ticks", {})):
            out.append(f"{a}: ticks")
    return out


def test_each_swap_one_record_big_ones_interrupt_once(devnet, engine_factory, tmp_path):
    from scripts.devnet import Traffic
    chain = "base"
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    port = free_port()
    e = engine_factory(roles=roles(chain), rings={"slot_size": 1024},
                       chains={"manifest": str(manifest), chain: {"drift_interval": 1.0}},
                       metrics={"listen": f"127.0.0.1:{port}"}).start()
    e.wait_for(lambda: feed(e, chain).get("follower", {}).get("active"), 30, "monitor following")
    t = Traffic(devnet.manifest, rate=1000, big_every=4, seed=11, chains=[chain])
    swaps = [t.step() for _ in range(40)]
    big = sum(1 for s in swaps if abs(s.price_move) >= 0.005)
    assert 0 < big < len(swaps)
    e.wait_for(lambda: feed(e, chain).get("events") == len(swaps), 30,
               f"{len(swaps)} records", poll=0.2)
    f = feed(e, chain)
    assert f["interrupts"] == big and f["reverted"] == 0 and f["oversize"] == 0
    assert f["follower"]["bad"] == 0 and f["follower"]["errors"] == 0
    # the agent decided on each interrupting record once (an action or a refusal)
    e.wait_for(lambda: e.roles()["spot"]["decisions"] == big, 20, "one decision per big swap")
    # the agent's replica: loaded from the snapshot, then every record it read applied (its
    # status info is written between switches, within 0.2 s)
    rep = e.wait_for(lambda: (i := e.roles()["spot"].get("info") or {}).get("applied", 0) >= big
                     and i, 10, "the agent's status info")
    assert rep["replicas"] == {chain: len(devnet.manifest["chains"][chain]["pools"])}
    assert rep["applied"] >= big and rep["unknown"] == 0 and rep["bad"] == 0
    e.wait_for(lambda: feed(e, chain)["drift_checks"] >= 2, 30, "drift checks", poll=0.3)
    assert feed(e, chain)["drift"] == 0, feed(e, chain)["drift_last"]
    meta, graph = read_snapshot(e, chain)
    assert len(graph) == len(devnet.manifest["chains"][chain]["pools"])
    assert graph_differences(graph, devnet.rpc_url(chain), devnet.w3(chain).eth.block_number) == []
    assert "following" in e.roles()[f"monitor-{chain}"]["info"]["summary"]
    # /metrics: the monitor's info numbers through its kind's declaration (roles/metrics.py)
    fams = scrape(f"http://127.0.0.1:{port}/metrics")
    mon = {"role": f"monitor-{chain}", "chain": chain}
    assert value(fams, "syndicate_chain_events_total", **mon) == len(swaps)
    assert value(fams, "syndicate_chain_interrupts_total", **mon) == big
    assert value(fams, "syndicate_chain_pools", **mon) == len(graph)
    assert value(fams, "syndicate_chain_drifted_pools_total", **mon) == 0
    assert value(fams, "syndicate_decisions_total", role="spot") == big
    # detection latency: every published record observed once, in status and /metrics
    det = e.roles()[f"monitor-{chain}"]["latency_us"]["detect"]
    assert det["n"] == len(swaps) and 0 < det["p50"] <= det["p99"]
    assert value(fams, "syndicate_detect_seconds_count", role=f"monitor-{chain}") == len(swaps)
    assert value(fams, "syndicate_detect_seconds_count", role="spot") is None   # not a source
    assert e.stop() == 0


def test_state_changed_without_a_log_is_drift(devnet, engine_factory, tmp_path):
    """A pair's reserves rewritten with anvil_setStorageAt (no Sync log, as a lying node or a
    missed log would leave it): the drift check finds that pool, reads it again once the node
    has a later block, and counts it; the other pools stay clean."""
    from scripts.devnet import Traffic
    chain = "polygon"
    m = devnet.manifest["chains"][chain]
    pairs = [p for p in m["pools"] if p["kind"] == "v2"]
    target, other = pairs[0], [p for p in m["pools"] if p is not pairs[0]][0]
    e = engine_factory(roles=roles(chain), rings={"slot_size": 1024},
                       chains={chain: {"ws": [devnet.ws_url(chain)], "rpc": [devnet.rpc_url(chain)],
                                       "pools": [target["address"], other["address"]],
                                       "drift_interval": 0.5}}).start()
    e.wait_for(lambda: feed(e, chain).get("drift_checks", 0) >= 1, 30, "a clean drift check")
    assert feed(e, chain)["drift"] == 0, feed(e, chain)["drift_last"]
    w3 = devnet.w3(chain)
    slot = w3.eth.get_storage_at(target["address"], 8)         # reserve0 | reserve1 << 112 | ts << 224
    r0, r1, _ = devnet.w3(chain).eth.contract(target["address"], abi=PAIR_ABI).functions.getReserves().call()
    assert int.from_bytes(slot, "big") & ((1 << 112) - 1) == r0, "UniswapV2Pair keeps reserves in slot 8"
    word = int.from_bytes(slot, "big") - r0 + r0 * 2                # reserve0 doubled, nothing logged
    assert w3.provider.make_request("anvil_setStorageAt", [target["address"], "0x8",
                                                          "0x" + word.to_bytes(32, "big").hex()])["result"]
    t = Traffic(devnet.manifest, rate=1000, seed=2, chains=[chain])
    t.chains = {chain: {**m, "pools": [other]}}                     # a logged swap elsewhere: a new head block
    t.step()
    w3.provider.make_request("evm_mine", [])                        # and one after it
    e.wait_for(lambda: feed(e, chain)["drift"] >= 1, 30, "the drift found", poll=0.3)
    f = feed(e, chain)
    assert target["address"].lower() in f["drift_last"] and "reserve0" in f["drift_last"]
    assert other["address"].lower() not in f["drift_last"]
    assert e.stop() == 0


PAIR_ABI = [{"name": "getReserves", "type": "function", "stateMutability": "view", "inputs": [],
             "outputs": [{"name": "", "type": "uint112"}, {"name": "", "type": "uint112"},
                         {"name": "", "type": "uint32"}]}]


def test_pool_without_code_is_counted_not_fatal(devnet, engine_factory, tmp_path):
    chain = "polygon"
    m = devnet.manifest["chains"][chain]
    ghost = "0x" + "de" * 20
    pools = [p["address"] for p in m["pools"]][:3] + [ghost]
    e = engine_factory(roles=roles(chain), rings={"slot_size": 1024},
                       chains={chain: {"ws": [devnet.ws_url(chain)], "rpc": [devnet.rpc_url(chain)],
                                       "pools": pools}}).start()
    e.wait_for(lambda: feed(e, chain).get("follower", {}).get("active"), 30, "monitor following")
    f = feed(e, chain)
    assert ghost in f["load_errors"] and f["book"]["pools"] == 3
    assert e.roles()[f"monitor-{chain}"]["restarts"] == 0
    assert e.stop() == 0


def test_anvil_stopped_and_started_again(engine_factory, tmp_path):
    """The node goes away and a new one answers at the same address, deployed anew: the same
    pool addresses but no block in common (other timestamps, other hashes).  The monitor
    retries by itself, finds no common ancestor, reads every pool again and publishes them."""
    from engine.chain.contracts import toolchain_missing
    from ingresshelp import Proxy
    from scripts.devnet import Devnet, Traffic
    if toolchain_missing():
        pytest.skip(toolchain_missing())
    chain = "arbitrum"
    net = Devnet.start((chain,), seed=0)
    proxy = Proxy(net.manifest["chains"][chain]["port"])
    try:
        pools = [p["address"] for p in net.manifest["chains"][chain]["pools"]]
        e = engine_factory(roles=roles(chain), rings={"slot_size": 1024},
                           chains={chain: {"ws": [proxy.url], "rpc": [f"http://127.0.0.1:{proxy.port}"],
                                           "pools": pools, "retry_max": 1.0,
                                           "drift_interval": 0.0}}).start()
        e.wait_for(lambda: feed(e, chain).get("follower", {}).get("active"), 30, "following")
        t = Traffic(net.manifest, rate=1000, big_every=3, seed=4, chains=[chain])
        for _ in range(6):
            t.step()
        e.wait_for(lambda: feed(e, chain).get("events") == 6, 30, "6 records")
        proxy.down = True
        proxy.cut()
        net.stop()
        e.wait_for(lambda: "down" in feed(e, chain)["follower"]["status"], 30, "status says down")
        net = Devnet.start((chain,), seed=0, cache=False)
        assert [p["address"] for p in net.manifest["chains"][chain]["pools"]] == pools
        proxy.target = ("127.0.0.1", net.manifest["chains"][chain]["port"])
        proxy.down = False
        e.wait_for(lambda: feed(e, chain)["follower"]["resyncs"] == 1 and
                   feed(e, chain)["follower"]["active"], 30, "the monitor back, pools re-read")
        t = Traffic(net.manifest, rate=1000, big_every=3, seed=5, chains=[chain])
        for _ in range(4):
            t.step()
        w3 = net.w3(chain)

        def caught_up():
            f = feed(e, chain)
            return f["follower"]["active"] and f["follower"]["head"] == w3.eth.block_number
        try:
            e.wait_for(caught_up, 40, "the monitor back on the new anvil, at its head", poll=0.3)
        except AssertionError:
            raise AssertionError((w3.eth.block_number, feed(e, chain)["follower"])) from None
        diffs = []

        def same():
            diffs[:] = graph_differences(read_snapshot(e, chain)[1], net.rpc_url(chain),
                                         w3.eth.block_number)
            return not diffs
        try:
            e.wait_for(same, 15, "the snapshot = chain", poll=0.5)
        except AssertionError:
            raise AssertionError(diffs[:10]) from None
        f = feed(e, chain)["follower"]
        assert f["reconnects"] >= 1 and f["resyncs"] == 1
        assert e.roles()[f"monitor-{chain}"]["restarts"] == 0
        assert e.stop() == 0
    finally:
        proxy.close()
        net.stop()
