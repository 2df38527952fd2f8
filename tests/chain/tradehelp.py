"""Real opportunities on the devnet for the executor's tests: push a price gap with a big swap,
read every pool from the chain, search with engine/arb, decide with the executor's eth_call as
the simulator, and publish what an agent publishes: an approved `opportunity` record carrying
`engine.arb.wire.action_record(action)`."""
from __future__ import annotations

import itertools
import time

from engine.arb.decision import Decider, DecisionConfig, Simulation, StateInfo
from engine.arb.graph import PoolGraph
from engine.arb.profit import GasModel, LoanBook, LoanOffer
from engine.arb.search import OpportunitySearch, SearchConfig
from engine.arb.types import LoanSource
from engine.arb.wire import action_record
from engine.chain.executor import Executor
from engine.chain.pools import load_pools, specs_from_manifest
from engine.chain.rpc import RpcClient

_events = itertools.count(1)


def gap(c, dex: str = "uniswap_v2", weth: int = 300, quote: str = "USDC") -> dict:
    """Sell `weth` WETH into `dex`'s WETH/`quote` pool: WETH is cheap there now."""
    pool = c.pool(dex, "WETH", quote, 500 if dex == "uniswap_v3" else None)
    c.swap(pool, "WETH", weth * 10**18)
    return pool


def approved(c, trigger: dict, *, role: str = "arbitrum-spotter", min_profit: int = 1,
             quote: str = "USDC") -> dict:
    """The best approved opportunity through `trigger`, as an agent's outbox record."""
    loaded = load_pools(RpcClient(c.m["rpc_url"]), specs_from_manifest(c.m))
    weth, usdc = c.token("WETH").lower(), c.token(quote).lower()
    graph = PoolGraph(loaded.pools.values(), max_hops=2, base_tokens=(usdc, weth))
    base_fee = c.w3.eth.get_block("latest")["baseFeePerGas"]
    gas = GasModel.arbitrum(weth, base_fee, chain=c.name)
    offers = [LoanOffer(LoanSource.BALANCER, c.m["lenders"]["balancer"]["address"], t, 0)
              for t in (usdc, weth)]
    search = OpportunitySearch(graph, gas, LoanBook(offers, v2_flash_swap=False),
                               SearchConfig(max_hops=2), chain=c.name)
    opps = search.on_event([trigger["address"].lower()])
    assert opps, "the gap opened no opportunity"
    sim_ex = Executor(c.w3, c.m["contracts"]["executor"], caller=c.m["accounts"]["executor_owner"])

    def simulate(action):
        s = sim_ex.simulate(action, estimate_gas=True, block="pending")
        return Simulation(s.ok, s.profit if s.ok else None, s.gas, s.error)

    decider = Decider(gas, DecisionConfig(min_profit=min_profit, max_age_s=60.0), simulator=simulate)
    event = f"{c.name}:0xblock:0xtx{next(_events)}:0"
    d = decider.decide(opps[0], graph, StateInfo(loaded.block, loaded.block, time.time()), event)
    assert d.approved, d.reason
    return record(d.action, role=role, event=event)


def record(action, *, role: str, event: str, t_origin: int | None = None) -> dict:
    return {"kind": "opportunity", "role": role, "event": event, "chain": action.chain,
            "approved": True, "reason": "ok", "confidence": 1.0,
            "action": action_record(action),
            "t_origin": t_origin if t_origin is not None else time.monotonic_ns()}


def predicted(rec: dict) -> int:
    """What the owner must receive: expected out − repayment (the contract's profit)."""
    a = rec["action"]
    return int(a["expected_out"]) - int(a["amount_in"]) - int(a["loan"]["fee"])
