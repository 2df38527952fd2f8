"""A local three-chain devnet: one anvil per chain id, real Uniswap contracts, seeded pools.

    syndicate devnet up [--chains arbitrum,base,polygon] [--manifest PATH] [--base-port N]
                        [--seed N] [--traffic RATE] [--no-cache]
        Starts one anvil per chain on 127.0.0.1 (ports base-port, base-port+1, ... or free
        ones), deploys everything, writes the manifest (default var/devnet/manifest.json) and
        stays in the foreground.  Ctrl-C, SIGTERM or SIGHUP stops every anvil; so does
        `syndicate devnet down`.  With --traffic it also runs the traffic generator.
    syndicate devnet traffic --manifest PATH [--rate R] [--big-every K] [--duration S] [--seed N]
        Random swaps against a running devnet: R swaps per second over all chains; every K-th
        swap (on average) is big enough to move its pool's price by at least 0.5 %.
    syndicate devnet down [--manifest PATH]
        Stops the `up` process named in the manifest (SIGTERM); it stops its anvils.

From Python (tests, the engine):

    with Devnet.start(("arbitrum", "base"), seed=0) as net:   # free loopback ports
        net.rpc_url("arbitrum"); net.ws_url("base"); net.w3("base")
        net.manifest["chains"]["arbitrum"]["pools"]
        net.write_manifest("var/devnet/manifest.json")
        Traffic(net.manifest, rate=5, big_every=10, seed=1).run(duration=30)

What each chain gets (all deployed by anvil's dev account 0, the "deployer"):

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

Lifetime: every anvil is started with PR_SET_PDEATHSIG=SIGKILL (so it dies with the Python
thread that started it, even if that process is SIGKILLed) and in its own session; `stop()`,
the context manager, an atexit hook and the CLI's signal handling stop it on every other path.
Start a Devnet from a thread that outlives it (normally the main thread).

Startup: deploying a chain takes 2-4 s here (web3 round trips, chains in parallel threads);
loading the same state into a fresh anvil (anvil_dumpState / anvil_loadState) takes 0.1 s.  So
the first start of a given (chain, seed, code) writes var/devnet/cache/<key>.{state,json} and
later starts load it; the key hashes this file, engine/chain/contracts.py, every artifact
deployed and the anvil version, so any change redeploys.  `cache=False` (CLI: --no-cache)
always deploys; SYNDICATE_DEVNET_CACHE=DIR moves the cache.
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
DEFAULT_MANIFEST = ROOT / "var" / "devnet" / "manifest.json"
CACHE_DIR = Path(os.environ.get("SYNDICATE_DEVNET_CACHE", ROOT / "var" / "devnet" / "cache"))
_DEPLOYED = ("WETH9", "DevToken", "DevPeriphery", "UniswapV2Factory", "UniswapV2Pair",
             "UniswapV3Factory", "UniswapV3Pool", "Authorizer", "Vault", "PoolAddressesProvider",
             "ACLManager", "Pool", "PoolConfigurator", "AToken", "StableDebtToken",
             "VariableDebtToken", "DefaultReserveInterestRateStrategy", "BorrowLogic", "BridgeLogic",
             "EModeLogic", "FlashLoanLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic",
             "ConfiguratorLogic")
MAX_UINT256 = (1 << 256) - 1
Q96 = 1 << 96
DEPLOYER_INDEX, TRADER_INDEX = 0, 9

# ---- what each chain gets ---------------------------------------------------------------

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
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}
# V3 liquidity per pool: (half-width of the range as a price ratio, share of the depth)
V3_RANGES = ((Fraction(1005, 1000), Fraction(3, 10)), (Fraction(105, 100), Fraction(4, 10)),
             (Fraction(2), Fraction(3, 10)))


def raw_amount(symbol: str, decimals: int, usd: Fraction | int) -> int:
    return int(Fraction(usd) / USD[symbol] * 10 ** decimals)


# ---- anvil processes ----------------------------------------------------------------------

def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it dies (even by SIGKILL)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    # the parent may already be gone before prctl ran: then nobody would ever kill us
    if os.getppid() == 1:
        os._exit(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


class Anvil:
    """One anvil process on 127.0.0.1:port."""

    def __init__(self, chain_id: int, port: int):
        self.chain_id, self.port = chain_id, port
        self.url = f"http://127.0.0.1:{port}"
        # an anonymous file (unlinked at once): anvil's stderr, read only if it fails to start
        self._log = tempfile.TemporaryFile(prefix="syn-anvil-")
        self.proc = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
             "--accounts", "10", "--balance", "1000000", "--silent",
             # a cached state is loaded with one anvil_loadState request of about 2 MB
             "--no-request-size-limit"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=_die_with_parent, start_new_session=True)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"anvil on port {self.port} exited with {self.proc.returncode}: "
                                   f"{self._log.read().decode(errors='replace')[-2000:]}")
            try:
                if int(_rpc(self.url, "eth_chainId", timeout=1.0), 16) == self.chain_id:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"anvil on port {self.port} not ready after {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- deployment ---------------------------------------------------------------------------

def _web3(url: str):
    from web3 import Web3
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))


def _send(w3, fn, sender: str):
    """Transact and require success (anvil automines: the receipt is there at once)."""
    tx_hash = fn.transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.005)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def sqrt_price_x96(price_1_per_0: Fraction) -> int:
    """floor(sqrt(price) * 2**96) for a raw-unit price of token0 in token1."""
    return math.isqrt(price_1_per_0.numerator * (1 << 192) // price_1_per_0.denominator)


def _deploy_chain(name: str, url: str, seed: int) -> dict:
    from engine.arb import v3 as v3math
    from engine.chain.contracts import deploy, load

    spec = CHAINS[name]
    rng = random.Random(f"{seed}:{name}")
    w3 = _web3(url)
    accounts = w3.eth.accounts
    me, trader = accounts[DEPLOYER_INDEX], accounts[TRADER_INDEX]
    cs = w3.to_checksum_address
    for who in (me, trader):  # enough ETH to wrap a realistic WETH supply
        _rpc(url, "anvil_setBalance", [who, hex(10 ** 30)])

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
                _send(w3, c.functions.mint(who, amount), me)
            _send(w3, c.functions.approve(periphery.address, MAX_UINT256), who)

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
            _send(w3, factory.functions.createPair(tokens[s0]["address"], tokens[s1]["address"]), me)
            pair = cs(factory.functions.getPair(tokens[s0]["address"], tokens[s1]["address"]).call())
            # a small per-DEX price offset (under the fee, so no free arbitrage at start)
            jitter = Fraction(10000 + rng.randint(-8, 8), 10000)
            usd = Fraction(int(depth * mult))
            for sym, f in ((s0, jitter), (s1, Fraction(1))):
                amt = raw_amount(sym, tokens[sym]["decimals"], usd * f)
                _send(w3, contracts[sym].functions.transfer(pair, amt), me)
            _send(w3, load("UniswapV2Pair").contract(w3, pair).functions.mint(me), me)
            pools.append({"address": pair, "dex": dex, "kind": "v2",
                          "token0": tokens[s0]["address"], "token1": tokens[s1]["address"],
                          "symbol0": s0, "symbol1": s1, "fee": 30, "tick_spacing": None})

    # V3: the real UniswapV3Factory, fee tier 100 enabled as on mainnet
    v3f = deploy(w3, "UniswapV3Factory", sender=me)
    _send(w3, v3f.functions.enableFeeAmount(100, 1), me)
    dexes.append({"name": "uniswap_v3", "kind": "v3", "factory": v3f.address, "fee": None,
                  "fee_tiers": [100, 500, 3000, 10000]})
    pool_art = load("UniswapV3Pool")
    for a, b, fee, depth in spec.v3_pools:
        s0, s1 = order(a, b)
        t0, t1 = tokens[s0]["address"], tokens[s1]["address"]
        _send(w3, v3f.functions.createPool(t0, t1, fee), me)
        addr = cs(v3f.functions.getPool(t0, t1, fee).call())
        pool = pool_art.contract(w3, addr)
        jitter = Fraction(10000 + rng.randint(-3, 3), 10000)
        sqrt_p = sqrt_price_x96(price_1_per_0(s0, s1) * jitter)
        _send(w3, pool.functions.initialize(sqrt_p), me)
        tick = v3math.get_tick_at_sqrt_ratio(sqrt_p)
        spacing = TICK_SPACING[fee]
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
            _send(w3, periphery.functions.mintV3(addr, lo, hi, liquidity), me)
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
            _send(w3, c.functions.transfer(lender, amt), me)

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
                      "balancer_authorizer": authorizer.address, **aave_market},
        "accounts": {"deployer": me, "trader": trader},
    }


def _cache_key(name: str, seed: int) -> str:
    import hashlib
    from engine.chain.contracts import load
    h = hashlib.sha256(f"{name}:{seed}:".encode())
    h.update(Path(__file__).read_bytes())
    h.update((ROOT / "engine" / "chain" / "contracts.py").read_bytes())
    for art in _DEPLOYED:
        h.update(Path(load(art).source).read_bytes())
    h.update((ANVIL.parent.parent / "package.json").read_bytes())  # the anvil version
    return f"{name}-{seed}-{h.hexdigest()[:16]}"


def _prepare_chain(name: str, url: str, seed: int, cache: bool) -> tuple[dict, str]:
    """Deploy on a fresh anvil, or load the cached state of an identical deployment."""
    if not cache:
        return _deploy_chain(name, url, seed), "deployed"
    key = _cache_key(name, seed)
    state_file, manifest_file = CACHE_DIR / f"{key}.state", CACHE_DIR / f"{key}.json"
    if state_file.is_file() and manifest_file.is_file():
        try:
            if _rpc(url, "anvil_loadState", [state_file.read_text()], timeout=60) is True:
                os.utime(state_file)  # recently used: not stale
                return json.loads(manifest_file.read_text()), "cached"
        except (OSError, ValueError, RuntimeError):
            pass  # a damaged cache entry: deploy afresh and overwrite it
    deployed = _deploy_chain(name, url, seed)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for stale in CACHE_DIR.glob(f"{name}-{seed}-*"):  # entries of older code, unused for a day
        # (not at once: two checkouts of different code may share the cache)
        if not stale.name.startswith(key) and time.time() - stale.stat().st_mtime > 86400:
            stale.unlink(missing_ok=True)
    state = _rpc(url, "anvil_dumpState", [], timeout=60)
    for path, text in ((state_file, state), (manifest_file, json.dumps(deployed))):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # concurrent starts: whole files only
    return deployed, "deployed"


RAY = 10 ** 27


def _deploy_aave(w3, me: str, tokens: dict, contracts: dict) -> tuple[str, dict]:
    """The real Aave V3 market (@aave/core-v3 1.19.3 artifacts), wired as aave-v3-deploy does:
    addresses provider, ACL manager, Pool behind its proxy (7 linked logic libraries),
    PoolConfigurator, a reserve per token (AToken/debt-token proxies, a rate strategy), flash
    loans enabled, premium 5 bps, and liquidity supplied through Pool.supply.  No price oracle:
    supplying and flashLoanSimple do not read one (borrowing would).  Returns the Pool address
    and the market's other addresses."""
    from engine.chain.contracts import deploy, load

    provider = deploy(w3, "PoolAddressesProvider", "syndicate-devnet", me, sender=me)
    _send(w3, provider.functions.setACLAdmin(me), me)
    acl = deploy(w3, "ACLManager", provider.address, sender=me)
    _send(w3, provider.functions.setACLManager(acl.address), me)
    _send(w3, acl.functions.addPoolAdmin(me), me)
    libs = {name: deploy(w3, name, sender=me).address
            for name in ("BorrowLogic", "BridgeLogic", "EModeLogic", "LiquidationLogic", "PoolLogic",
                         "SupplyLogic", "ConfiguratorLogic")}
    libs["FlashLoanLogic"] = deploy(w3, load("FlashLoanLogic").link(libs), sender=me).address
    pool_impl = deploy(w3, load("Pool").link(libs), provider.address, sender=me)
    _send(w3, provider.functions.setPoolImpl(pool_impl.address), me)
    pool = load("Pool").contract(w3, provider.functions.getPool().call())
    conf_impl = deploy(w3, load("PoolConfigurator").link(libs), sender=me)
    _send(w3, provider.functions.setPoolConfiguratorImpl(conf_impl.address), me)
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
    _send(w3, conf.functions.initReserves(inputs), me)
    for t in tokens.values():
        _send(w3, conf.functions.setReserveFlashLoaning(t["address"], True), me)
    _send(w3, conf.functions.updateFlashloanPremiumTotal(5), me)
    _send(w3, conf.functions.updateFlashloanPremiumToProtocol(0), me)
    for sym, c in contracts.items():
        amount = raw_amount(sym, tokens[sym]["decimals"], 20_000_000)
        _send(w3, c.functions.approve(pool.address, amount), me)
        _send(w3, pool.functions.supply(c.address, amount, me, 0), me)
    return pool.address, {"aave_addresses_provider": provider.address,
                          "aave_pool_configurator": conf.address, "aave_acl_manager": acl.address}


# ---- the devnet ---------------------------------------------------------------------------

_LIVE: "set[Devnet]" = set()


@atexit.register
def _stop_all() -> None:
    for net in list(_LIVE):
        net.stop()


class Devnet:
    """Anvil processes with deployed contracts; see the module docstring.  Use `Devnet.start`."""

    def __init__(self) -> None:
        self.anvils: dict[str, Anvil] = {}
        self.manifest: dict[str, Any] = {"version": 1, "chains": {}}
        self.timings: dict[str, float] = {}
        self.how: dict[str, str] = {}   # per chain: "deployed" or "cached"
        self._w3: dict[str, Any] = {}

    @classmethod
    def start(cls, chains: Iterable[str] = ("arbitrum", "base", "polygon"), *,
              base_port: int | None = None, seed: int = 0, cache: bool = True) -> "Devnet":
        chains = tuple(chains)
        unknown = [c for c in chains if c not in CHAINS]
        if unknown or not chains:
            raise ValueError(f"unknown chain(s) {unknown or chains}; known: {', '.join(CHAINS)}")
        if not ANVIL.is_file():
            raise FileNotFoundError(f"anvil is not installed at {ANVIL}: run `npm ci` in {ROOT}")
        net = cls()
        _LIVE.add(net)
        try:
            t0 = time.monotonic()
            # started here, in the caller's thread: PR_SET_PDEATHSIG follows the starting thread
            for i, name in enumerate(chains):
                port = base_port + i if base_port is not None else free_port()
                net.anvils[name] = Anvil(CHAINS[name].chain_id, port)
            for i, (name, a) in enumerate(list(net.anvils.items())):
                for attempt in range(3):
                    try:
                        a.wait_ready()
                        break
                    except RuntimeError:
                        # a free port can be taken by someone else before anvil binds it
                        if base_port is not None or attempt == 2 or a.proc.poll() is None:
                            raise
                        a.stop()
                        a = net.anvils[name] = Anvil(CHAINS[name].chain_id, free_port())
            net.timings["anvil_ready"] = time.monotonic() - t0
            t1 = time.monotonic()
            with ThreadPoolExecutor(len(chains)) as pool:
                futures = {n: pool.submit(_prepare_chain, n, net.anvils[n].url, seed, cache)
                           for n in chains}
                done = {n: f.result() for n, f in futures.items()}
            deployed = {n: d for n, (d, _) in done.items()}
            net.how = {n: how for n, (_, how) in done.items()}
            net.timings["deploy"] = time.monotonic() - t1
            net.manifest.update(seed=seed, pid=os.getpid())
            for name in chains:
                a = net.anvils[name]
                net.manifest["chains"][name] = {
                    "chain_id": a.chain_id, "port": a.port, "rpc_url": a.url,
                    "ws_url": f"ws://127.0.0.1:{a.port}", "anvil_pid": a.proc.pid, **deployed[name]}
                # the state every test starts from: mine nothing more, just record the block
            return net
        except BaseException:
            net.stop()
            raise

    # -- accessors
    def rpc_url(self, chain: str) -> str:
        return self.manifest["chains"][chain]["rpc_url"]

    def ws_url(self, chain: str) -> str:
        return self.manifest["chains"][chain]["ws_url"]

    def w3(self, chain: str):
        if chain not in self._w3:
            self._w3[chain] = _web3(self.rpc_url(chain))
        return self._w3[chain]

    @property
    def chains(self) -> tuple[str, ...]:
        return tuple(self.manifest["chains"])

    def write_manifest(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=2) + "\n")
        os.replace(tmp, path)  # readers never see half a manifest
        return path

    # -- lifetime
    def stop(self) -> None:
        for a in self.anvils.values():
            a.stop()
        _LIVE.discard(self)

    def __enter__(self) -> "Devnet":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- traffic ------------------------------------------------------------------------------

@dataclass
class SwapRecord:
    chain: str
    pool: str
    dex: str
    pair: str              # "WETH/USDC" (token0/token1) and, for V3, the fee tier
    token_in: str
    amount_in: int
    big: bool
    price_move: float      # relative change of the pool's price (token1 per token0), signed
    tx: str


class Traffic:
    """Random swaps from the manifest's trader account through DevPeriphery.

    Sizes are log-uniform between 0.001 % and 0.1 % of the input reserve; with probability
    1/big_every a swap is sized to move the pool's price by 0.6-1.5 % (V2: from the reserves;
    V3: from the active liquidity, a lower bound on the move since liquidity only thins away from
    the price).  Directions lean back toward the seeded price so a long run does not drift away.
    """

    def __init__(self, manifest: dict, *, rate: float = 2.0, big_every: int = 20, seed: int = 0,
                 chains: Iterable[str] | None = None):
        from engine.chain.contracts import load
        if rate <= 0 or big_every < 1:
            raise ValueError("rate must be > 0 and big_every >= 1")
        self.rate, self.big_every = rate, big_every
        self.rng = random.Random(seed)
        self.chains = {n: c for n, c in manifest["chains"].items() if chains is None or n in chains}
        self._w3 = {n: _web3(c["rpc_url"]) for n, c in self.chains.items()}
        self._pair, self._pool, self._periph = load("UniswapV2Pair"), load("UniswapV3Pool"), load("DevPeriphery")
        self._start_price: dict[str, float] = {}
        self.sent = 0

    def _price(self, w3, pool: dict) -> float:
        if pool["kind"] == "v2":
            r0, r1, _ = self._pair.contract(w3, pool["address"]).functions.getReserves().call()
            return r1 / r0
        sp = self._pool.contract(w3, pool["address"]).functions.slot0().call()[0]
        return (sp / Q96) ** 2

    def step(self, big: bool | None = None) -> SwapRecord:
        """Make one swap on a random pool of a random chain."""
        rng = self.rng
        chain = rng.choice(sorted(self.chains))
        c = self.chains[chain]
        w3 = self._w3[chain]
        pool = rng.choice(c["pools"])
        if big is None:
            big = rng.random() < 1.0 / self.big_every
        before = self._price(w3, pool)
        start = self._start_price.setdefault(pool["address"], before)
        # lean toward the seeded price: 65 % of swaps push back toward it
        toward_start_zero_for_one = before > start  # selling token0 lowers the price
        zero_for_one = toward_start_zero_for_one if rng.random() < 0.65 else not toward_start_zero_for_one
        if before == start:
            zero_for_one = rng.random() < 0.5
        token_in = pool["token0"] if zero_for_one else pool["token1"]
        periph = self._periph.contract(w3, c["contracts"]["periphery"])
        trader = c["accounts"]["trader"]
        move = rng.uniform(0.006, 0.015) if big else None
        if pool["kind"] == "v2":
            r0, r1, _ = self._pair.contract(w3, pool["address"]).functions.getReserves().call()
            r_in = r0 if zero_for_one else r1
            # price r1/r0 moves by about (1 + x)^2 for an input of x * r_in (plus the fee)
            frac = (math.sqrt(1 + move) - 1) * 1.01 if big else 10 ** rng.uniform(-5, -3)
            amount = max(1, int(r_in * frac))
            fn = periph.functions.swapV2(pool["address"], token_in, amount, pool["fee"], trader)
        else:
            sp, *_ = self._pool.contract(w3, pool["address"]).functions.slot0().call()
            liq = self._pool.contract(w3, pool["address"]).functions.liquidity().call()
            frac = move if big else 10 ** rng.uniform(-5, -3.3)
            # amounts to move sqrtP by sqrt(1 +- frac) within the active liquidity
            if zero_for_one:
                target = int(sp * math.sqrt(1 - frac))
                amount = liq * Q96 * (sp - target) // (sp * target)
            else:
                target = int(sp * math.sqrt(1 + frac))
                amount = liq * (target - sp) // Q96
            amount = max(1, int(amount * (1 + pool["fee"] / 1e6) * 1.01))
            fn = periph.functions.swapV3(pool["address"], zero_for_one, amount, trader)
        tx_hash = fn.transact({"from": trader})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.005)
        if receipt["status"] != 1:
            raise RuntimeError(f"traffic swap {tx_hash.hex()} on {pool['address']} reverted")
        after = self._price(w3, pool)
        self.sent += 1
        pair = f"{pool['symbol0']}/{pool['symbol1']}" + (f" {pool['fee']}" if pool["kind"] == "v3" else "")
        return SwapRecord(chain, pool["address"], pool["dex"], pair, token_in, amount, big,
                          after / before - 1, "0x" + tx_hash.hex().removeprefix("0x"))

    def run(self, duration: float | None = None, stop: threading.Event | None = None,
            on_swap=None) -> int:
        """Swap at `rate` per second until `duration` passes or `stop` is set; return the count."""
        stop = stop or threading.Event()
        t_end = None if duration is None else time.monotonic() + duration
        next_at = time.monotonic()
        n = 0
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            rec = self.step()
            n += 1
            if on_swap:
                on_swap(rec)
            # Poisson arrivals at the configured rate
            next_at += self.rng.expovariate(self.rate)
            delay = next_at - time.monotonic()
            if delay > 0:
                stop.wait(delay if t_end is None else min(delay, max(0.0, t_end - time.monotonic())))
            else:
                next_at = time.monotonic()
        return n


# ---- CLI ----------------------------------------------------------------------------------

class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGHUP so that every `finally` runs."""


def _raise_stop(signum, frame):  # the only job of this handler: unwind the main thread
    raise _Stop(signal.Signals(signum).name)


def _print_swap(rec: SwapRecord) -> None:
    tag = "BIG " if rec.big else ""
    print(f"{rec.chain:<9} {rec.dex:<13} {rec.pair:<16} {rec.pool} {tag}in={rec.amount_in} "
          f"move={rec.price_move * 100:+.3f}%", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="syndicate devnet", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the devnet in the foreground")
    up.add_argument("--chains", default="arbitrum,base,polygon")
    up.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    up.add_argument("--base-port", type=int, default=None)
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--no-cache", action="store_true", help="deploy even if a cached state exists")
    up.add_argument("--traffic", type=float, default=0.0, metavar="RATE",
                    help="also run the traffic generator at RATE swaps/s")
    tr = sub.add_parser("traffic", help="random swaps against a running devnet")
    tr.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    tr.add_argument("--rate", type=float, default=2.0)
    tr.add_argument("--big-every", type=int, default=20)
    tr.add_argument("--duration", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    dn = sub.add_parser("down", help="stop the devnet started by `up`")
    dn.add_argument("--manifest", default=str(DEFAULT_MANIFEST))
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2

    if args.cmd == "up":
        chains = [c.strip() for c in args.chains.split(",") if c.strip()]
        bad = [c for c in chains if c not in CHAINS]
        if bad or not chains:
            print(f"devnet: --chains: unknown {bad or chains}; known: {','.join(CHAINS)}", file=sys.stderr)
            return 2
        if args.base_port is not None and not (1024 <= args.base_port <= 65535 - len(chains)):
            print(f"devnet: --base-port {args.base_port} is out of range", file=sys.stderr)
            return 2
        old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            with Devnet.start(chains, base_port=args.base_port, seed=args.seed,
                              cache=not args.no_cache) as net:
                path = net.write_manifest(args.manifest)
                for name in net.chains:
                    c = net.manifest["chains"][name]
                    print(f"{name:<9} chain {c['chain_id']:<6} {c['rpc_url']}  "
                          f"{len(c['tokens'])} tokens, {len(c['pools'])} pools", flush=True)
                print(f"manifest {path}  (ready in {sum(net.timings.values()):.1f} s, "
                      f"{', '.join(f'{n} {h}' for n, h in net.how.items())}; Ctrl-C stops)", flush=True)
                try:
                    if args.traffic > 0:
                        Traffic(net.manifest, rate=args.traffic, seed=args.seed).run(on_swap=_print_swap)
                    else:
                        while True:
                            signal.pause()
                finally:
                    Path(args.manifest).unlink(missing_ok=True)  # it names ports that are gone
        except (KeyboardInterrupt, _Stop):
            print("devnet: stopped", file=sys.stderr)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    try:
        manifest = json.loads(Path(args.manifest).read_text())
    except (OSError, ValueError) as exc:
        print(f"devnet: cannot read manifest {args.manifest}: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "down":
        pid = manifest.get("pid")
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (TypeError, ValueError, ProcessLookupError) as exc:
            print(f"devnet: no running devnet for {args.manifest} (pid {pid}): {exc}", file=sys.stderr)
            return 1
        return 0
    if args.rate <= 0 or args.big_every < 1:
        print("devnet: --rate must be > 0 and --big-every >= 1", file=sys.stderr)
        return 2
    old = signal.signal(signal.SIGTERM, _raise_stop)
    traffic = Traffic(manifest, rate=args.rate, big_every=args.big_every, seed=args.seed)
    try:
        traffic.run(duration=args.duration, on_swap=_print_swap)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
    print(f"devnet: {traffic.sent} swaps sent", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
