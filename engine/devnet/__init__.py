"""A local three-chain devnet: one anvil per chain id, real Uniswap contracts, seeded pools.

    anvil.py    anvil processes (die with their starter), JSON-RPC and web3 helpers
    deploy.py   what each chain gets, deploying it, the cache of deployed states
    devnet.py   Devnet: start the anvils, prepare every chain, the manifest
    traffic.py  Traffic: random small and big swaps; their sizing as pure functions
    cli.py      `syndicate devnet up|traffic|down`

From Python (tests, the engine):

    with Devnet.start(("arbitrum", "base"), seed=0) as net:   # free loopback ports
        net.rpc_url("arbitrum"); net.ws_url("base"); net.w3("base")
        net.manifest["chains"]["arbitrum"]["pools"]
        net.write_manifest("var/devnet/manifest.json")
        Traffic(net.manifest, rate=5, big_every=10, seed=1).run(duration=30)

It builds on engine/chain (artifacts, deployment) and engine/arb (V3 tick math); the engine core
never imports it (tests/test_layering.py).

Manifest (JSON, addresses checksummed, amounts as integers):

    {"version": 1, "seed": 0, "pid": <pid of the process that owns the anvils>,
     "chains": {"arbitrum": {
        "chain_id": 42161, "port": 8545, "rpc_url": "http://127.0.0.1:8545",
        "ws_url": "ws://127.0.0.1:8545", "anvil_pid": 1234,
        "tokens": {"WETH": {"address", "symbol", "decimals", "usd"}, ...},
        "dexes": [{"name", "kind": "v2", "factory", "fee": 30, "fee_unit": "bps"},
                  {"name": "uniswap_v3", "kind": "v3", "factory", "fee": null,
                   "fee_tiers": [100, 500, 3000, 10000]}],
        "pools": [{"address", "dex", "kind": "v2"|"v3", "token0", "token1", "symbol0",
                   "symbol1", "fee" (v2: bps, v3: hundredths of a bip), "tick_spacing" (v3)}],
        "lenders": {"balancer": {"address", "kind": "balancer-v2-vault", "real_bytecode": true},
                    "aave": {"address" (the Pool proxy), "kind": "aave-v3-pool",
                             "real_bytecode": true, "premium_bps": 5}},
        "contracts": {"periphery", "weth", "balancer_authorizer", "aave_addresses_provider",
                      "aave_pool_configurator", "aave_acl_manager"},
        "accounts": {"deployer", "trader"}}}}
"""
from __future__ import annotations

from .anvil import ANVIL, ROOT, Anvil, free_port
from .cli import DEFAULT_MANIFEST, main
from .deploy import CACHE_DIR, CHAINS, USD, ChainSpec, cache_key, raw_amount, sqrt_price_x96
from .devnet import Devnet
from .traffic import SwapRecord, Traffic

__all__ = ["ANVIL", "CACHE_DIR", "CHAINS", "DEFAULT_MANIFEST", "ROOT", "USD", "Anvil", "ChainSpec",
           "Devnet", "SwapRecord", "Traffic", "cache_key", "free_port", "main", "raw_amount",
           "sqrt_price_x96"]
