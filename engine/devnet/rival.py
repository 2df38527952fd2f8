"""A competing searcher on the devnet: it back-runs some big swaps before we can.

    Traffic(..., rival=Rival(manifest, share=0.5, react=0.8)).run()
        big swap lands ──► the rival (same thread, at once): on one of *its* pools (a share of
        each chain's pools, drawn once), with probability `react`:
            its book catches up (eth_getLogs since the last block it applied)
            ──► engine/arb's search on the moved pool ──► the best cycle
            ──► execute() on its own FlashArbExecutor, from its own account (dev account 8)

It reacts in-process right after the swap's receipt, with nothing to detect or validate, so it
usually lands first: after it, the gap on that pool is gone and an Action computed on the state
before it reverts at the contract's minimum-profit check (costing gas only) or finds nothing.
Over its pools that gives the outcomes a structure to learn (issue 13: contested routes); the
pools it leaves alone keep their gaps.  Its trades are real flash-loan arbitrages: the search,
the loan (a V2 flash swap on the route's first pair, or the manifest's Balancer Vault or Aave
pool), the contract's profit check.  `statistics()` counts what it tried and took.

Measured against the engine (tests/chain/test_learning_devnet.py, automine, load 5-7): our
pipeline (monitor → agent → executor eth_call) was first on 123 of 124 big swaps, so "usually
lands first" needs help.  `priority_wei` (default 0) is the tip the rival pays on every chain,
whatever its gas style: with interval mining (`evm_setIntervalMining`) its back-run and ours
wait for the same block and the node orders them by tip, so a rival that tips more is first
even when it reacts later (a searcher with Arbitrum's Timeboost express lane, or a builder's ear).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace

from engine.arb import events as ev
from engine.arb.decision import Decider, DecisionConfig
from engine.arb.profit import GasModel
from engine.arb.search import OpportunitySearch, SearchConfig
from engine.chain.executor import Executor, NodeSigner
from engine.chain.poolbook import PoolBook
from engine.chain.pools import load_pools, specs_from_manifest
from engine.chain.rpc import RpcClient
from engine.chain.venue import CHAIN_GAS, gas_model, loan_book

from .anvil import web3

RIVAL_INDEX = 8          # dev account 8 (deploy.py leaves 1-8 to tests and tools)
TOPICS = [ev.SYNC_TOPIC, ev.V2_SWAP_TOPIC, ev.V3_SWAP_TOPIC, ev.V3_MINT_TOPIC, ev.V3_BURN_TOPIC]
# chain -> (gas style, wrapped native symbol)


@dataclass
class _Side:
    """The rival on one chain."""
    chain: str
    w3: object
    rpc: RpcClient
    account: str
    executor: Executor
    book: PoolBook
    search: OpportunitySearch
    pools: set
    native: str
    style: str
    counts: dict = field(default_factory=lambda: {"seen": 0, "tried": 0, "nothing": 0,
                                                  "landed": 0, "reverted": 0, "profit": {}})


class Rival:
    def __init__(self, manifest: dict, *, chains=None, share: float = 0.5, react: float = 0.8,
                 seed: int = 0, max_hops: int = 2, priority_wei: int = 0):
        if not 0 < share <= 1 or not 0 <= react <= 1:
            raise ValueError("share must be in (0, 1] and react in [0, 1]")
        self.rng = random.Random(seed)
        self.react = react
        self.priority_wei = max(0, int(priority_wei))
        self.sides: dict[str, _Side] = {}
        for name, m in manifest["chains"].items():
            if chains is not None and name not in chains:
                continue
            self.sides[name] = self._side(name, m, share, max_hops)

    def _side(self, chain: str, m: dict, share: float, max_hops: int) -> _Side:
        w3 = web3(m["rpc_url"])
        account = w3.eth.accounts[RIVAL_INDEX]
        executor = Executor.deploy(w3, account, signer=NodeSigner(account))
        rpc = RpcClient(m["rpc_url"])
        book = PoolBook(chain, threshold_bps=50)
        book.load(load_pools(rpc, specs_from_manifest(m), "latest"))
        tokens = {s: t["address"].lower() for s, t in (m.get("tokens") or {}).items()}
        style, native_sym = CHAIN_GAS.get(chain, ("ethereum", "WETH"))
        book.graph.base_tokens = tuple(tokens[s] for s in ("WETH", "WMATIC", "USDC", "USDT", "DAI")
                                       if s in tokens)
        native = tokens.get(native_sym, native_sym)
        search = OpportunitySearch(book.graph, self._gas(style, native, chain, 0), loan_book(m),
                                   SearchConfig(max_hops=max_hops), chain=chain)
        addresses = sorted(p["address"].lower() for p in m["pools"])
        mine = set(self.rng.sample(addresses, max(1, round(len(addresses) * share))))
        return _Side(chain, w3, rpc, account, executor, book, search, mine, native, style)

    @staticmethod
    def _gas(style: str, native: str, chain: str, base_fee: int) -> GasModel:
        return gas_model(style, chain, native, base_fee, 0, min_priority=0)   # anvil: no floor

    @property
    def account(self) -> dict[str, str]:
        return {c: s.account for c, s in self.sides.items()}

    def pools(self, chain: str) -> set[str]:
        return set(self.sides[chain].pools) if chain in self.sides else set()

    def _catch_up(self, s: _Side) -> None:
        head = int(s.rpc.call("eth_blockNumber", []), 16)
        if head <= s.book.head:
            return
        logs = s.rpc.call("eth_getLogs", [{"fromBlock": hex(s.book.head + 1), "toBlock": hex(head),
                                           "address": sorted(s.book.graph.pools),
                                           "topics": [TOPICS]}])
        for log in logs:
            s.book.apply(log, 0)
        s.book.head = max(s.book.head, head)

    def after(self, swap) -> dict | None:
        """Called with each traffic swap (a SwapRecord) right after its receipt; the rival's
        trade, if it made one: {"tx", "status", "profit", "token"}."""
        s = self.sides.get(swap.chain)
        if s is None or not swap.big or swap.pool.lower() not in s.pools:
            return None
        s.counts["seen"] += 1
        if self.rng.random() >= self.react:
            return None
        self._catch_up(s)
        base_fee = int(s.w3.eth.get_block("latest")["baseFeePerGas"])
        gas = self._gas(s.style, s.native, s.chain, base_fee)
        s.search.gas = gas
        opps = [o for o in s.search.on_event([swap.pool.lower()]) if o.net > 0]
        if not opps:
            s.counts["nothing"] += 1
            return None
        s.counts["tried"] += 1
        decider = Decider(gas, DecisionConfig(min_profit=1))
        action = decider.build_action(opps[0], s.book.graph, event_id=swap.tx)
        try:
            sim = s.executor.simulate(action, estimate_gas=True)    # the static estimate runs short
        except Exception:   # eth_call passed, eth_estimateGas reverted: the state moved between
            sim = None      # (interval mining: someone's back-run is in the pending block)
        if sim is None or not sim.ok:
            s.counts["nothing"] += 1
            return None
        action = decider.build_action(opps[0], s.book.graph, gas_units=sim.gas, event_id=swap.tx)
        if self.priority_wei:
            action = replace(action, max_priority_fee_per_gas=self.priority_wei,
                             max_fee_per_gas=action.max_fee_per_gas + self.priority_wei)
        out = s.executor.send(action, now=time.time())
        self._catch_up(s)
        if out.status == 1:
            s.counts["landed"] += 1
            s.counts["profit"][out.token.lower()] = s.counts["profit"].get(out.token.lower(), 0) + out.profit
        else:
            s.counts["reverted"] += 1
        return {"tx": out.tx, "status": out.status, "profit": out.profit, "token": out.token}

    def statistics(self) -> dict:
        return {c: {**{k: v for k, v in s.counts.items() if k != "profit"},
                    "profit": {t: str(p) for t, p in s.counts["profit"].items()},
                    "pools": len(s.pools), "account": s.account} for c, s in self.sides.items()}
