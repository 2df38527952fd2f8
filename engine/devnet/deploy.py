"""What each devnet chain gets, deploying it on a fresh anvil, and the cache of deployed states.

    tokens      WETH = the real WETH9 bytecode (@uniswap/v2-periphery); the others are DevToken
                (contracts/DevToken.sol) with the real symbol and decimals (USDC 6, WBTC 8, ...)
    V2 DEXes    two or three UniswapV2Factory instances from @uniswap/v2-core, named after the
                chain's real V2 forks.  The real pair bytecode hard-codes a 0.3 % fee
                (997/1000), so every V2 DEX here charges 30 bps whatever the fork charges on
                mainnet; forks with other fees (BaseSwap 25 bps, Camelot dynamic) are not mimicked.
    V3 DEX      UniswapV3Factory from @uniswap/v3-core (fee tiers 100, 500, 3000, 10000), pools
                initialised at realistic prices with three tick ranges each (narrow, medium,
                wide) so that big swaps cross initialised ticks; liquidity is added through
                DevPeriphery.mintV3 (a V3 pool mints only through a paying callback)
    lenders     the real Balancer V2 Vault (+ Authorizer) from @balancer-labs/v2-deployments,
                funded by transfer (flash-loan fee 0); the real Aave V3 market from @aave/core-v3
                (Pool with its linked libraries, configurator, a reserve per token, supplied
                through Pool.supply, flash-loan premium 5 bps)
    accounts    deployer (dev account 0) and trader (dev account 9) hold every token and have
                approved DevPeriphery; dev accounts 1-8 are left for tests

Deploying a chain takes 2-4 s here (web3 round trips); loading the same state into a fresh anvil
(anvil_dumpState / anvil_loadState) takes 0.1 s.  So the first start of a given (chain, seed,
code) writes CACHE_DIR/<key>.{state,json} and later starts load it; the key hashes every file of
engine/devnet, engine/chain/contracts.py, every artifact deployed and the anvil version, so any
change redeploys.  SYNDICATE_DEVNET_CACHE=DIR moves the cache.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from engine.arb import v3 as v3math
from engine.arb.v3 import Q96, TICK_SPACING_BY_FEE
from engine.chain.contracts import deploy, load

from .anvil import ANVIL, ROOT, rpc, web3

CACHE_DIR = Path(os.environ.get("SYNDICATE_DEVNET_CACHE", ROOT / "var" / "devnet" / "cache"))
_DEPLOYED = ("WETH9", "DevToken", "DevPeriphery", "UniswapV2Factory", "UniswapV2Pair",
             "UniswapV3Factory", "UniswapV3Pool", "Authorizer", "Vault", "PoolAddressesProvider",
             "ACLManager", "Pool", "PoolConfigurator", "AToken", "StableDebtToken",
             "VariableDebtToken", "DefaultReserveInterestRateStrategy", "BorrowLogic", "BridgeLogic",
             "EModeLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic",
             "ConfiguratorLogic", "FlashArbExecutor")
MAX_UINT256 = (1 << 256) - 1
DEPLOYER_INDEX, TRADER_INDEX = 0, 9
EXECUTOR_OWNER_INDEX = 1    # owns the devnet's FlashArbExecutor (the executor role's key)
RAY = 10 ** 27

# USD prices the pools are seeded at (roughly late-2024 levels; only ratios matter).
USD = {"WETH": Fraction(3000), "WBTC": Fraction(60000), "ARB": Fraction(8, 10),
       "WMATIC": Fraction(1, 2), "USDC": Fraction(1), "USDC.e": Fraction(1), "USDbC": Fraction(1),
       "USDT": Fraction(1), "DAI": Fraction(1)}


@dataclass(frozen=True)
class ChainSpec:
    chain_id: int
    tokens: tuple[tuple[str, int], ...]                   # (symbol, decimals); WETH is WETH9
    v2_dexes: tuple[tuple[str, float], ...]               # (name, depth multiplier)
    v2_pairs: tuple[tuple[str, str, int], ...]            # (a, b, USD depth per side)
    v3_pools: tuple[tuple[str, str, int, int], ...]       # (a, b, fee, USD depth per side)
    v2_only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dex -> pairs it lacks


CHAINS: dict[str, ChainSpec] = {
    "arbitrum": ChainSpec(
        42161,
        (("WETH", 18), ("USDC", 6), ("USDT", 6), ("ARB", 18), ("WBTC", 8)),
        (("uniswap_v2", 1.0), ("sushiswap_v2", 0.6), ("camelot_v2", 0.4)),
        (("WETH", "USDC", 5_000_000), ("WETH", "USDT", 3_000_000), ("USDC", "USDT", 2_000_000),
         ("WETH", "ARB", 2_000_000), ("WBTC", "WETH", 2_000_000)),
        (("WETH", "USDC", 500, 8_000_000), ("WETH", "USDC", 3000, 2_000_000),
         ("WETH", "USDT", 500, 4_000_000), ("USDC", "USDT", 100, 4_000_000),
         ("WETH", "ARB", 3000, 2_000_000), ("WBTC", "WETH", 500, 3_000_000)),
        {"camelot_v2": ("WETH/USDT", "USDC/USDT", "WBTC/WETH")},
    ),
    "base": ChainSpec(
        8453,
        (("WETH", 18), ("USDC", 6), ("USDbC", 6), ("DAI", 18)),
        (("uniswap_v2", 1.0), ("sushiswap_v2", 0.5)),
        (("WETH", "USDC", 4_000_000), ("WETH", "USDbC", 1_000_000), ("USDC", "USDbC", 1_000_000),
         ("WETH", "DAI", 1_000_000)),
        (("WETH", "USDC", 500, 8_000_000), ("WETH", "USDC", 3000, 2_000_000),
         ("USDC", "USDbC", 100, 2_000_000), ("WETH", "DAI", 3000, 1_000_000)),
    ),
    "polygon": ChainSpec(
        137,
        (("WMATIC", 18), ("WETH", 18), ("USDC.e", 6), ("USDC", 6), ("DAI", 18), ("USDT", 6)),
        (("quickswap_v2", 1.0), ("sushiswap_v2", 0.6), ("uniswap_v2", 0.3)),
        (("WMATIC", "USDC.e", 2_000_000), ("WETH", "USDC.e", 3_000_000), ("WMATIC", "WETH", 2_000_000),
         ("USDC.e", "USDC", 1_000_000), ("USDC.e", "USDT", 1_000_000), ("WETH", "DAI", 1_000_000)),
        (("USDC.e", "WETH", 500, 4_000_000), ("USDC.e", "WETH", 3000, 1_000_000),
         ("WMATIC", "USDC.e", 500, 2_000_000), ("WMATIC", "WETH", 3000, 1_000_000),
         ("USDC.e", "USDC", 100, 2_000_000)),
    ),
}
# V3 liquidity per pool: (half-width of the range as a price ratio, share of the depth)
V3_RANGES = ((Fraction(1005, 1000), Fraction(3, 10)), (Fraction(105, 100), Fraction(4, 10)),
             (Fraction(2), Fraction(3, 10)))


def raw_amount(symbol: str, decimals: int, usd: Fraction | int) -> int:
    return int(Fraction(usd) / USD[symbol] * 10 ** decimals)


def sqrt_price_x96(price_1_per_0: Fraction) -> int:
    """floor(sqrt(price) * 2**96) for a raw-unit price of token0 in token1."""
    return math.isqrt(price_1_per_0.numerator * (1 << 192) // price_1_per_0.denominator)


def send(w3, fn, sender: str):
    """Transact and require success (anvil automines: the receipt is there at once)."""
    tx_hash = fn.transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.005)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def deploy_chain(name: str, url: str, seed: int) -> dict:
    spec = CHAINS[name]
    rng = random.Random(f"{seed}:{name}")
    w3 = web3(url)
    accounts = w3.eth.accounts
    me, trader = accounts[DEPLOYER_INDEX], accounts[TRADER_INDEX]
    cs = w3.to_checksum_address
    for who in (me, trader):  # enough ETH to wrap a realistic WETH supply
        rpc(url, "anvil_setBalance", [who, hex(10 ** 30)])

    # tokens
    tokens: dict[str, dict] = {}
    contracts: dict[str, Any] = {}
    for symbol, decimals in spec.tokens:
        if symbol == "WETH":
            c = deploy(w3, "WETH9", sender=me)
        else:
            c = deploy(w3, "DevToken", symbol, symbol, decimals, sender=me)
        contracts[symbol] = c
        tokens[symbol] = {"address": c.address, "symbol": symbol, "decimals": decimals,
                          "usd": float(USD[symbol])}
    periphery = deploy(w3, "DevPeriphery", sender=me)
    supply_usd = 10 ** 10  # per token and holder: far more than any pool holds
    for symbol, c in contracts.items():
        amount = raw_amount(symbol, tokens[symbol]["decimals"], supply_usd)
        for who in (me, trader):
            if symbol == "WETH":
                h = c.functions.deposit().transact({"from": who, "value": amount})
                w3.eth.wait_for_transaction_receipt(h, poll_latency=0.005)
            else:
                send(w3, c.functions.mint(who, amount), me)
            send(w3, c.functions.approve(periphery.address, MAX_UINT256), who)

    def order(a: str, b: str) -> tuple[str, str]:
        return (a, b) if int(tokens[a]["address"], 16) < int(tokens[b]["address"], 16) else (b, a)

    def price_1_per_0(s0: str, s1: str) -> Fraction:
        d0, d1 = tokens[s0]["decimals"], tokens[s1]["decimals"]
        return USD[s0] / USD[s1] * Fraction(10 ** d1, 10 ** d0)

    dexes: list[dict] = []
    pools: list[dict] = []
    # V2: one real UniswapV2Factory per DEX name
    for dex, mult in spec.v2_dexes:
        factory = deploy(w3, "UniswapV2Factory", me, sender=me)
        dexes.append({"name": dex, "kind": "v2", "factory": factory.address, "fee": 30,
                      "fee_unit": "bps", "note": "real UniswapV2Pair bytecode: fee fixed at 0.3 %"})
        skip = spec.v2_only.get(dex, ())
        for a, b, depth in spec.v2_pairs:
            if f"{a}/{b}" in skip:
                continue
            s0, s1 = order(a, b)
            send(w3, factory.functions.createPair(tokens[s0]["address"], tokens[s1]["address"]), me)
            pair = cs(factory.functions.getPair(tokens[s0]["address"], tokens[s1]["address"]).call())
            # a small per-DEX price offset (under the fee, so no free arbitrage at start)
            jitter = Fraction(10000 + rng.randint(-8, 8), 10000)
            usd = Fraction(int(depth * mult))
            for sym, f in ((s0, jitter), (s1, Fraction(1))):
                amt = raw_amount(sym, tokens[sym]["decimals"], usd * f)
                send(w3, contracts[sym].functions.transfer(pair, amt), me)
            send(w3, load("UniswapV2Pair").contract(w3, pair).functions.mint(me), me)
            pools.append({"address": pair, "dex": dex, "kind": "v2",
                          "token0": tokens[s0]["address"], "token1": tokens[s1]["address"],
                          "symbol0": s0, "symbol1": s1, "fee": 30, "tick_spacing": None})

    # V3: the real UniswapV3Factory, fee tier 100 enabled as on mainnet
    v3f = deploy(w3, "UniswapV3Factory", sender=me)
    send(w3, v3f.functions.enableFeeAmount(100, 1), me)
    dexes.append({"name": "uniswap_v3", "kind": "v3", "factory": v3f.address, "fee": None,
                  "fee_tiers": [100, 500, 3000, 10000]})
    pool_art = load("UniswapV3Pool")
    for a, b, fee, depth in spec.v3_pools:
        s0, s1 = order(a, b)
        t0, t1 = tokens[s0]["address"], tokens[s1]["address"]
        send(w3, v3f.functions.createPool(t0, t1, fee), me)
        addr = cs(v3f.functions.getPool(t0, t1, fee).call())
        pool = pool_art.contract(w3, addr)
        jitter = Fraction(10000 + rng.randint(-3, 3), 10000)
        sqrt_p = sqrt_price_x96(price_1_per_0(s0, s1) * jitter)
        send(w3, pool.functions.initialize(sqrt_p), me)
        tick = v3math.get_tick_at_sqrt_ratio(sqrt_p)
        spacing = TICK_SPACING_BY_FEE[fee]
        for half_width, share in V3_RANGES:
            d = max(spacing, int(math.log(half_width) / math.log(1.0001)))
            lo = ((tick - d) // spacing) * spacing
            hi = -((-(tick + d)) // spacing) * spacing
            if hi <= tick:
                hi += spacing
            sa = v3math.get_sqrt_ratio_at_tick(lo)
            # liquidity that puts `share` of the depth (in token1) below the current price
            amount1 = raw_amount(s1, tokens[s1]["decimals"], depth * share)
            liquidity = amount1 * Q96 // (sqrt_p - sa)
            send(w3, periphery.functions.mintV3(addr, lo, hi, liquidity), me)
        pools.append({"address": addr, "dex": "uniswap_v3", "kind": "v3", "token0": t0, "token1": t1,
                      "symbol0": s0, "symbol1": s1, "fee": fee, "tick_spacing": spacing})

    # lenders: the real Balancer V2 Vault, and an Aave-V3-style lender
    authorizer = deploy(w3, "Authorizer", me, sender=me)
    vault = deploy(w3, "Vault", authorizer.address, tokens["WETH"]["address"] if "WETH" in tokens
                   else tokens[spec.tokens[0][0]]["address"], 0, 0, sender=me)
    aave_pool, aave_market = _deploy_aave(w3, me, tokens, contracts)
    for lender in (vault.address,):
        for symbol, c in contracts.items():
            amt = raw_amount(symbol, tokens[symbol]["decimals"], 20_000_000)
            send(w3, c.functions.transfer(lender, amt), me)

    # the executor role's contract, owned by a dev account the devnet can sign for
    executor = deploy(w3, "FlashArbExecutor", sender=accounts[EXECUTOR_OWNER_INDEX])
    return {
        "chain_id": spec.chain_id,
        "tokens": tokens,
        "dexes": dexes,
        "pools": pools,
        "lenders": {
            "balancer": {"address": vault.address, "kind": "balancer-v2-vault", "real_bytecode": True,
                         "fee_bps": 0},
            "aave": {"address": aave_pool, "kind": "aave-v3-pool", "real_bytecode": True,
                     "premium_bps": 5},
        },
        "contracts": {"periphery": periphery.address, "weth": tokens.get("WETH", {}).get("address"),
                      "balancer_authorizer": authorizer.address, "executor": executor.address,
                      **aave_market},
        "accounts": {"deployer": me, "trader": trader,
                     "executor_owner": accounts[EXECUTOR_OWNER_INDEX]},
    }


def _deploy_aave(w3, me: str, tokens: dict, contracts: dict) -> tuple[str, dict]:
    """The real Aave V3 market (@aave/core-v3 1.19.3 artifacts), wired as aave-v3-deploy does:
    addresses provider, ACL manager, Pool behind its proxy (7 linked logic libraries),
    PoolConfigurator, a reserve per token (AToken/debt-token proxies, a rate strategy), flash
    loans enabled, premium 5 bps, and liquidity supplied through Pool.supply.  No price oracle:
    supplying and flashLoanSimple do not read one (borrowing would).  Returns the Pool address
    and the market's other addresses."""
    provider = deploy(w3, "PoolAddressesProvider", "syndicate-devnet", me, sender=me)
    send(w3, provider.functions.setACLAdmin(me), me)
    acl = deploy(w3, "ACLManager", provider.address, sender=me)
    send(w3, provider.functions.setACLManager(acl.address), me)
    send(w3, acl.functions.addPoolAdmin(me), me)
    libs = {name: deploy(w3, name, sender=me).address
            for name in ("BorrowLogic", "BridgeLogic", "EModeLogic", "LiquidationLogic", "PoolLogic",
                         "SupplyLogic", "ConfiguratorLogic")}
    libs["FlashLoanLogic"] = deploy(w3, load("FlashLoanLogic").link(libs), sender=me).address
    pool_impl = deploy(w3, load("Pool").link(libs), provider.address, sender=me)
    send(w3, provider.functions.setPoolImpl(pool_impl.address), me)
    pool = load("Pool").contract(w3, provider.functions.getPool().call())
    conf_impl = deploy(w3, load("PoolConfigurator").link(libs), sender=me)
    send(w3, provider.functions.setPoolConfiguratorImpl(conf_impl.address), me)
    conf = load("PoolConfigurator").contract(w3, provider.functions.getPoolConfigurator().call())
    a_impl = deploy(w3, "AToken", pool.address, sender=me)
    s_impl = deploy(w3, "StableDebtToken", pool.address, sender=me)
    v_impl = deploy(w3, "VariableDebtToken", pool.address, sender=me)
    strategy = deploy(w3, "DefaultReserveInterestRateStrategy", provider.address, RAY * 9 // 10, 0,
                      RAY * 4 // 100, RAY * 6 // 10, RAY // 200, RAY * 6 // 10, RAY // 100,
                      RAY * 8 // 100, RAY // 5, sender=me)
    inputs = [(a_impl.address, s_impl.address, v_impl.address, t["decimals"], strategy.address,
               t["address"], me, "0x" + "00" * 20, f"Aave {sym}", f"a{sym}", f"Aave variable debt {sym}",
               f"variableDebt{sym}", f"Aave stable debt {sym}", f"stableDebt{sym}", b"")
              for sym, t in tokens.items()]
    send(w3, conf.functions.initReserves(inputs), me)
    for t in tokens.values():
        send(w3, conf.functions.setReserveFlashLoaning(t["address"], True), me)
    send(w3, conf.functions.updateFlashloanPremiumTotal(5), me)
    send(w3, conf.functions.updateFlashloanPremiumToProtocol(0), me)
    for sym, c in contracts.items():
        amount = raw_amount(sym, tokens[sym]["decimals"], 20_000_000)
        send(w3, c.functions.approve(pool.address, amount), me)
        send(w3, pool.functions.supply(c.address, amount, me, 0), me)
    return pool.address, {"aave_addresses_provider": provider.address,
                          "aave_pool_configurator": conf.address, "aave_acl_manager": acl.address}


PACKAGE = Path(__file__).resolve().parent


def cache_key(name: str, seed: int, package: Path = PACKAGE) -> str:
    """The name of the cached state of chain `name` deployed with `seed` by this code: it
    changes with any file of the package (a stale state is worse than a 3 s redeploy), the
    artifact loader, every artifact deployed and the anvil version."""
    h = hashlib.sha256(f"{name}:{seed}:".encode())
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    h.update((ROOT / "engine" / "chain" / "contracts.py").read_bytes())
    for art in _DEPLOYED:
        h.update(Path(load(art).source).read_bytes())
    h.update((ANVIL.parent.parent / "package.json").read_bytes())  # the anvil version
    return f"{name}-{seed}-{h.hexdigest()[:16]}"


def prepare_chain(name: str, url: str, seed: int, cache: bool) -> tuple[dict, str]:
    """Deploy on a fresh anvil, or load the cached state of an identical deployment."""
    if not cache:
        return deploy_chain(name, url, seed), "deployed"
    key = cache_key(name, seed)
    state_file, manifest_file = CACHE_DIR / f"{key}.state", CACHE_DIR / f"{key}.json"
    if state_file.is_file() and manifest_file.is_file():
        try:
            if rpc(url, "anvil_loadState", [state_file.read_text()], timeout=60) is True:
                os.utime(state_file)  # recently used: not stale
                return json.loads(manifest_file.read_text()), "cached"
        except (OSError, ValueError, RuntimeError):
            pass  # a damaged cache entry: deploy afresh and overwrite it
    deployed = deploy_chain(name, url, seed)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_DIR.glob(f"{name}-{seed}-*"):  # entries of older code, unused for a day
        # (not at once: two checkouts of different code may share the cache)
        if not stale.name.startswith(key) and time.time() - stale.stat().st_mtime > 86400:
            stale.unlink(missing_ok=True)
    state = rpc(url, "anvil_dumpState", [], timeout=60)
    for path, text in ((state_file, state), (manifest_file, json.dumps(deployed))):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # concurrent starts: whole files only
    return deployed, "deployed"
