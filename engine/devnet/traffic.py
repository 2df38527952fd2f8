"""Traffic on the devnet: random swaps from the manifest's trader account through DevPeriphery.

    Traffic(net.manifest, rate=5, big_every=10, seed=1).run(duration=30)

Sizes are log-uniform between 0.001 % and 0.1 % of the input reserve; with probability
1/big_every a swap is sized to move the pool's price by 0.6-1.5 % (V2: from the reserves; V3:
from the active liquidity, a lower bound on the move since liquidity only thins away from the
price).  Directions lean back toward the seeded price so a long run does not drift away.  The
sizing and the lean are pure functions of the pool's state (unit-tested against engine/arb's
exact math); `Traffic.step` reads the state, draws the randomness and sends the swap.
"""
from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from engine.arb.v3 import Q96
from engine.chain.contracts import load

from .anvil import web3

BIG_MOVE = (0.006, 0.015)          # a big swap moves its pool's price by this much (relative)
SMALL_V2 = (-5.0, -3.0)            # log10 of a small swap's share of the input reserve
SMALL_V3 = (-5.0, -3.3)            # log10 of a small swap's relative price move
LEAN = 0.65                        # share of swaps that push the price back toward its start


# ---- sizing: pure ---------------------------------------------------------------------------

def v2_share_for_move(move: float) -> float:
    """The share x of the input reserve whose swap moves a V2 price by a factor >= 1 + move:
    an input of x·r_in moves r1/r0 by about (1 + x)^2, less the fee; 1 % more covers 0.3 %."""
    return (math.sqrt(1 + move) - 1) * 1.01


def v2_amount_in(reserve_in: int, share: float) -> int:
    """`share` of the input reserve, in raw units, at least 1."""
    return max(1, int(reserve_in * share))


def v3_amount_in(sqrt_price_x96: int, liquidity: int, zero_for_one: bool, move: float,
                 fee: int) -> int:
    """The input that moves a V3 price (token1 per token0) by `move` (relative: down when selling
    token0, up when buying it) if the active liquidity held all the way, fee (hundredths of a
    bip) and 1 % added.  The liquidity thins away from the price, so the move is at least this."""
    if zero_for_one:
        target = int(sqrt_price_x96 * math.sqrt(1 - move))
        amount = liquidity * Q96 * (sqrt_price_x96 - target) // (sqrt_price_x96 * target)
    else:
        target = int(sqrt_price_x96 * math.sqrt(1 + move))
        amount = liquidity * (target - sqrt_price_x96) // Q96
    return max(1, int(amount * (1 + fee / 1e6) * 1.01))


def leans_back(price: float, start: float, u: float, lean: float = LEAN) -> bool:
    """zero_for_one (sell token0, which lowers the price) for a uniform draw u in [0, 1): with
    probability `lean` the direction that moves the price back toward `start`."""
    back = price > start
    return back if u < lean else not back


# ---- swaps ----------------------------------------------------------------------------------

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
    rival: dict | None = None   # the rival's back-run right after it, if it made one


class Traffic:
    """Random swaps against a running devnet (see the module docstring)."""

    def __init__(self, manifest: dict, *, rate: float = 2.0, big_every: int = 20, seed: int = 0,
                 chains: Iterable[str] | None = None, rival=None):
        if rate <= 0 or big_every < 1:
            raise ValueError("rate must be > 0 and big_every >= 1")
        self.rate, self.big_every = rate, big_every
        self.rival = rival          # engine/devnet/rival.Rival: back-runs some big swaps at once
        self.rng = random.Random(seed)
        self.chains = {n: c for n, c in manifest["chains"].items() if chains is None or n in chains}
        self._w3 = {n: web3(c["rpc_url"]) for n, c in self.chains.items()}
        self._pair, self._pool, self._periph = load("UniswapV2Pair"), load("UniswapV3Pool"), load("DevPeriphery")
        self._start_price: dict[str, float] = {}
        self.sent = 0
        self.failed = 0          # swaps `run` skipped because the chain refused them
        self.last_error = ""

    def _price(self, w3, pool: dict) -> float:
        if pool["kind"] == "v2":
            r0, r1, _ = self._pair.contract(w3, pool["address"]).functions.getReserves().call()
            return r1 / r0
        sp = self._pool.contract(w3, pool["address"]).functions.slot0().call()[0]
        return (sp / Q96) ** 2

    def step(self, big: bool | None = None, settle: float = 0.0) -> SwapRecord:
        """Make one swap on a random pool of a random chain.  `settle`: seconds to wait once
        the swap is sent before reading its receipt and the price after, so that the moments
        right after the swap are free of this client's work (`bench e2e` times an engine's
        reaction in that window; a real chain's other traders run on other machines)."""
        rng = self.rng
        chain = rng.choice(sorted(self.chains))
        c = self.chains[chain]
        w3 = self._w3[chain]
        pool = rng.choice(c["pools"])
        if big is None:
            big = rng.random() < 1.0 / self.big_every
        before = self._price(w3, pool)
        start = self._start_price.setdefault(pool["address"], before)
        zero_for_one = leans_back(before, start, rng.random())
        if before == start:
            zero_for_one = rng.random() < 0.5
        token_in = pool["token0"] if zero_for_one else pool["token1"]
        periph = self._periph.contract(w3, c["contracts"]["periphery"])
        trader = c["accounts"]["trader"]
        move = rng.uniform(*BIG_MOVE) if big else None
        if pool["kind"] == "v2":
            r0, r1, _ = self._pair.contract(w3, pool["address"]).functions.getReserves().call()
            share = v2_share_for_move(move) if big else 10 ** rng.uniform(*SMALL_V2)
            amount = v2_amount_in(r0 if zero_for_one else r1, share)
            fn = periph.functions.swapV2(pool["address"], token_in, amount, pool["fee"], trader)
        else:
            frac = move if big else 10 ** rng.uniform(*SMALL_V3)
            fn, zero_for_one, amount = self._v3_swap(w3, periph, pool, zero_for_one, frac, before,
                                                     trader)
            token_in = pool["token0"] if zero_for_one else pool["token1"]
        tx_hash = fn.transact({"from": trader})
        if settle > 0:
            time.sleep(settle)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.005)
        if receipt["status"] != 1:
            raise RuntimeError(f"traffic swap {tx_hash.hex()} on {pool['address']} reverted")
        after = self._price(w3, pool)
        self.sent += 1
        pair = f"{pool['symbol0']}/{pool['symbol1']}" + (f" {pool['fee']}" if pool["kind"] == "v3" else "")
        rec = SwapRecord(chain, pool["address"], pool["dex"], pair, token_in, amount, big,
                         after / before - 1, "0x" + tx_hash.hex().removeprefix("0x"))
        if self.rival is not None:
            rec.rival = self.rival.after(rec)
        return rec

    def _v3_swap(self, w3, periph, pool: dict, zero_for_one: bool, frac: float, price: float,
                 trader: str):
        """The swap call, its direction and amount.  Sized from the active liquidity, a swap
        near the edge of the pool's positions would run out of liquidity all the way to the
        periphery's price limit (and the next one the same way reverts with "SPL"), so it is
        simulated first: a revert turns it round, an output under 90 % of the fair one (it
        left the liquidity) divides it by 4."""
        from web3.exceptions import ContractLogicError
        contract = self._pool.contract(w3, pool["address"])
        sp = contract.functions.slot0().call()[0]
        liq = contract.functions.liquidity().call()
        amount = v3_amount_in(sp, liq, zero_for_one, frac, pool["fee"])
        for _ in range(6):
            fn = periph.functions.swapV3(pool["address"], zero_for_one, amount, trader)
            try:
                out = fn.call({"from": trader})
            except ContractLogicError:
                zero_for_one = not zero_for_one
                amount = v3_amount_in(sp, liq, zero_for_one, frac, pool["fee"])
                continue
            fair = amount * price if zero_for_one else amount / price
            if out >= 0.9 * fair:
                break
            amount = max(1, amount // 4)
        return fn, zero_for_one, amount

    def run(self, duration: float | None = None, stop: threading.Event | None = None,
            on_swap=None) -> int:
        """Swap at `rate` per second until `duration` passes or `stop` is set; return the count."""
        stop = stop or threading.Event()
        t_end = None if duration is None else time.monotonic() + duration
        next_at = time.monotonic()
        n = 0
        from web3.exceptions import Web3Exception
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            try:
                rec = self.step()
            except (RuntimeError, ValueError, Web3Exception) as e:
                # one swap the chain refused (a pool at the end of its liquidity): the run goes on
                self.failed += 1
                self.last_error = f"{type(e).__name__}: {e}"[:300]
                stop.wait(0.05)
                continue
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
