"""The agents price real opportunities (issue 12, part 1), in a real engine on the devnet: the
traffic generator's big swaps open cross-DEX gaps; the spotter's Action, re-quoted on a replica
read from the chain and simulated with eth_call of the deployed FlashArbExecutor, predicts the
contract's profit to the wei; the executor role validates it on its own replica (fed by the
events rings it reads quietly); a picky agent refuses the same events with its reason; every
decision is in the `opportunities` database and counted in `status`."""
from __future__ import annotations

import time

import pytest

from engine.arb.graph import PoolGraph
from engine.arb.validate import requote
from engine.arb.wire import action_from_record
from engine.chain.executor import Executor
from engine.chain.pools import PoolSpec, load_pools
from engine.chain.rpc import RpcClient
from engine.core.store import Store
from enginehelp import agent, collect
from ingresshelp import own_devnet

devnet = pytest.fixture(scope="module")(own_devnet)   # swaps stay out of the session devnet
CHAIN = "arbitrum"


def info(e, role: str) -> dict:
    return (e.roles().get(role) or {}).get("info") or {}


def chain_graph(devnet, block: int) -> PoolGraph:
    """The chain's pools read now, straight from the node: a replica nobody else applied."""
    pools = devnet.manifest["chains"][CHAIN]["pools"]
    got = load_pools(RpcClient(devnet.rpc_url(CHAIN)), [PoolSpec(p["address"], p["kind"])
                                                         for p in pools], block)
    assert not got.errors, got.errors
    return PoolGraph(got.pools.values())


def test_big_swaps_become_actions_the_chain_confirms_to_the_wei(devnet, engine_factory, tmp_path):
    from scripts.devnet import Traffic
    w3 = devnet.w3(CHAIN)
    owner = w3.eth.accounts[1]
    contract = Executor.deploy(w3, owner)            # eth_call from its owner
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    n_pools = len(devnet.manifest["chains"][CHAIN]["pools"])
    roles = {f"monitor-{CHAIN}": {"kind": "roles.monitor:ChainMonitor", "chains": [CHAIN]},
             # freshness is the unit tests' (a loaded machine may take seconds to deliver)
             "spot": agent([CHAIN], options={"max_age_s": 60.0}),
             "picky": agent([CHAIN], options={"min_profit": 10**30, "max_age_s": 60.0}),
             "exec": {**agent([CHAIN]), "kind": "roles.agents:Executor", "subscribe": "quiet",
                      "inbox": "interrupt"}}
    e = engine_factory(roles=roles, chains={"manifest": str(manifest),
                                            CHAIN: {"drift_interval": 0.0}}).start()
    e.wait_for(lambda: ((info(e, f"monitor-{CHAIN}").get("chains") or {}).get(CHAIN) or {})
               .get("follower", {}).get("active"), 30, "monitor following")
    t = Traffic(devnet.manifest, rate=1000, big_every=1, seed=21, chains=[CHAIN])
    found = None
    decided = 0
    seen = []
    for _ in range(20):
        s = t.step(big=True)
        if abs(s.price_move) < 0.005:
            continue                                  # did not interrupt
        decided += 1
        e.wait_for(lambda: info(e, "spot").get("opportunities", {}).get("opportunities") == decided,
                   30, f"{decided} decisions", poll=0.1)
        got, lost = collect(e, "spot", decided, timeout=10)
        assert lost == 0 and len(got) == decided
        last = got[-1]
        seen.append((last["code"], last["reason"][:120]))
        assert last["kind"] == "opportunity" and last["event"].split(":")[2] == s.tx
        if last["approved"]:
            found = last
            break
        assert last["code"] in ("no-profitable-route", "below-minimum", "stale"), last
    assert found is not None, f"no big swap opened a gap worth taking: {seen}"
    action = action_from_record(found["action"])
    predicted = action.expected_out - action.amount_in - action.loan.fee
    assert predicted > 0 and action.route.is_cycle and action.min_profit < predicted

    # the chain's word, on the state the agent priced (nothing has moved since)
    block = w3.eth.block_number
    independent = requote(chain_graph(devnet, block), action)
    sim = Executor(w3, contract.address, caller=owner).simulate(action)
    assert sim.ok, sim.error
    assert sim.profit == independent.profit == predicted and independent.ok

    # the executor role re-quoted it on its own replica and simulated it (paper): the same figure
    ex = e.wait_for(lambda: next((d for d in collect(e, "exec", 10**6, timeout=0.5)[0]
                                  if d.get("event") == found["event"] and d.get("source") == "spot"
                                  and d.get("state") != "queued"),
                                 None), 20, "validated")
    assert ex["state"] == "paper" and int(ex["simulated"]) == int(ex["predicted"]) == predicted, ex

    # the picky agent refused every one of the same events, with its reason
    e.wait_for(lambda: info(e, "picky").get("opportunities", {}).get("opportunities") == decided,
               20, "picky decided")
    picky = info(e, "picky")["opportunities"]
    assert picky["approved"] == 0
    assert picky["refused_by_reason"].get("below-minimum", 0) >= 1
    ops = info(e, "spot")["opportunities"]
    assert ops["approved"] == 1 and ops["refused"] == decided - 1
    assert "opportunities" in info(e, "spot")["summary"]
    assert info(e, "spot")["replicas"] == {CHAIN: n_pools}
    assert info(e, "spot")["gas"][CHAIN]["source"] in ("sampled", "fallback")

    # every decision in the opportunities database, the full detail beside the outbox's
    def recorded():
        st = Store.open(e.store_dir, readonly=True)
        try:
            with st.read() as r:
                return [rec for _, rec in r.records("opportunities", "spot")]
        finally:
            st.close()
    recs = e.wait_for(lambda: (x := recorded()) and len(x) == decided and x, 10, "recorded")
    mine = next(r for r in recs if r["event"] == found["event"])
    assert mine["approved"] and mine["amounts"][-1] == str(action.expected_out)
    assert mine["action"]["amount_in"] == str(action.amount_in)
    assert e.stop() == 0
    assert "opportunity approved" in e.stderr() or "opportunity approved" in _log(e)


def _log(e) -> str:
    logs = list((e.tmp / "state" / "log").glob("*.log"))
    return "".join(p.read_text(errors="replace") for p in logs)


# anvil's well-known dev key of account 1 (owner of the manifest's FlashArbExecutor): test-only
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_live_big_swaps_land_and_pay_the_predicted_profit_to_the_wei(devnet, engine_factory,
                                                                    tmp_path, monkeypatch):
    """Issue 12 end to end, live: traffic's big swap → monitor → agent's Action → the executor's
    re-quote and eth_call → signed, sent → landed; the owner's token balances grow by exactly
    the realised profits, and each realised profit is the agent's prediction to the wei."""
    from scripts.devnet import Traffic
    monkeypatch.setenv("SYNDICATE_EXECUTOR_KEY", OWNER_KEY)
    m = devnet.manifest["chains"][CHAIN]
    w3 = devnet.w3(CHAIN)
    owner = m["accounts"]["executor_owner"]
    erc20 = {s: t["address"] for s, t in m["tokens"].items()}
    from engine.chain.contracts import load
    bal = lambda: {s: load("DevToken").contract(w3, a).functions.balanceOf(owner).call()  # noqa: E731
                   for s, a in erc20.items()}
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    roles = {f"monitor-{CHAIN}": {"kind": "roles.monitor:ChainMonitor", "chains": [CHAIN]},
             "spot": agent([CHAIN], options={"max_age_s": 60.0}),
             "exec": {**agent([CHAIN]), "kind": "roles.executor:Executor", "subscribe": "quiet",
                      "inbox": "interrupt", "options": {"stale_factor": 400.0}}}
    e = engine_factory(roles=roles, engine={"mode": "live"},
                       chains={"manifest": str(manifest), CHAIN: {"drift_interval": 0.0}}).start()
    e.wait_for(lambda: ((info(e, f"monitor-{CHAIN}").get("chains") or {}).get(CHAIN) or {})
               .get("follower", {}).get("active"), 30, "monitor following")
    before = bal()
    t = Traffic(devnet.manifest, rate=1000, big_every=1, seed=33, chains=[CHAIN])
    for _ in range(20):
        s = t.step(big=True)
        if abs(s.price_move) < 0.005:
            continue
        time.sleep(0.5)
        c = info(e, "exec").get("counts") or {}
        if c.get("landed"):
            break
    counts = e.wait_for(lambda: (c := info(e, "exec").get("counts") or {}).get("landed")
                        and not info(e, "exec").get("pending") and c, 30, "a landed trade")
    assert e.stop() == 0
    st = Store.open(e.store_dir, readonly=True)
    try:
        with st.read() as r:
            recs = [rec for _, rec in r.records("outcomes", "exec")]
    finally:
        st.close()
    landed = [x for x in recs if x["state"] == "landed"]
    assert len(landed) == counts["landed"] >= 1
    after = bal()
    by_token = {}
    signed = {x["key"]: x for x in recs if x["state"] == "signed"}
    for x in landed:
        assert int(x["realised"]) == int(x["predicted"]) == int(x["event_profit"]) > 0, x
        token = signed[x["key"]]["token"].lower()
        by_token[token] = by_token.get(token, 0) + int(x["realised"])
    for sym, a in erc20.items():
        assert after[sym] - before[sym] == by_token.get(a.lower(), 0), sym
