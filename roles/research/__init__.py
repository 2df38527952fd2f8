"""The roles' background research (issue 13): what each role studies between interrupts.

The guide's tasks, with its intervals as defaults (engine.toml `[roles.NAME.tasks.TASK]` may
change `interval`, `priority` and the task's `options`), and what each one's discoveries feed:

    arbitrum-spotter    gas-trend 60 s        the gas bid (next base fee, slope, priority fee)
                        sequencer-timing 5 m  block interval and jitter, Nitro's l1BlockNumber
                                              where the node has it (Nitro batch timing folds in
                                              here: anvil has none, and the discovery says so)
                        mev-watch 2 m         back-runners of big swaps: contested pools
                        liquidity-map 15 m    pairs and their depth
    base-analyst        fee-structure 60 s    as gas-trend, for an OP-stack chain
                        op-stack-metrics 5 m  block interval, gas use, the L1 fee oracle
                        cross-dex-liquidity 10 m  as liquidity-map
    polygon-specialist  gas-volatility 60 s   as gas-trend (volatility is in every discovery)
                        block-times 5 m       block-time consistency: the state age after which
                                              an Action is refused
                        bridge-gaps 10 m      the same token's price on each chain (reported)
    flash-loan-executor path-discovery 1 h    every cycle of its replicas, cached for the search
                        contract-optimisation 10 m  gas per route shape, eth_estimateGas at the
                                              decision's block (roles/research/contract.py):
                                              the agents' simulator reports it (the gas model)
                        fork-testing 30 m     the newest approved Actions sent on an anvil fork
                                              at their block (roles/research/fork.py): verdict
                                              exact / differs / reverted, and the gas used,
                                              which the agents' gas model takes where larger

Each task is one class (roles/research/chain.py: RPC reads; graph.py: pool graphs) used under
the names above.  A task that cannot get its data fails its run (`Failed`) and tries again at
its next interval: a node that is down never takes a role down.
"""
from __future__ import annotations

from .chain import BlockTiming, GasTrend, MevWatch
from .contract import ContractGas
from .fork import ForkTest
from .graph import BridgeGaps, LiquidityMap, PathDiscovery

# role family -> {task name: (class, default interval s)}
PLAN = {
    "spotter": {"gas-trend": (GasTrend, 60.0), "sequencer-timing": (BlockTiming, 300.0),
                "mev-watch": (MevWatch, 120.0), "liquidity-map": (LiquidityMap, 900.0)},
    "analyst": {"fee-structure": (GasTrend, 60.0), "op-stack-metrics": (BlockTiming, 300.0),
                "cross-dex-liquidity": (LiquidityMap, 600.0)},
    "specialist": {"gas-volatility": (GasTrend, 60.0), "block-times": (BlockTiming, 300.0),
                   "bridge-gaps": (BridgeGaps, 600.0)},
    "executor": {"path-discovery": (PathDiscovery, 3600.0),
                 "contract-optimisation": (ContractGas, 600.0),
                 "fork-testing": (ForkTest, 1800.0)},
}


def declared(family: str) -> dict:
    """{task name: class} for a RoleKind's TASKS declaration."""
    return {name: cls for name, (cls, _) in PLAN[family].items()}


def build(family: str, *, chain: str, rpc: str | None, pools=(), exclude=(), graphs=None,
          run_dir=None, tokens=None, store=None, setups=None) -> list:
    """The family's tasks for one chain, named and timed as PLAN says; tasks whose inputs the
    role does not have (no rpc, no graphs) are still built, and fail their runs saying why."""
    out = []
    for name, (cls, interval) in PLAN[family].items():
        if cls in (GasTrend, BlockTiming):
            t = cls(chain, name=name, interval=interval, options={"rpc": rpc})
        elif cls is MevWatch:
            t = cls(chain, pools, exclude, name=name, interval=interval, options={"rpc": rpc})
        elif cls in (ContractGas, ForkTest):
            t = cls(store, setups, name=name, interval=interval)
        elif cls is BridgeGaps:
            t = cls(run_dir, tokens or {}, name=name, interval=interval)
        else:
            t = cls(graphs or (lambda: {}), name=name, interval=interval)
        out.append(t)
    return out
