"""Fast traffic for benchmarks: Traffic's swap sizing over raw JSON-RPC, hundreds of swaps a second.

    lean = LeanTraffic(manifest, chain="base", seed=1)
    tx = lean.step()              # one small swap on a random pool: its tx hash
    lean.settle()                 # wait until anvil has mined everything sent
    lean.failed(txs)              # the tx hashes among them that reverted (or were not mined)

`Traffic.step` costs ~90-130 ms a swap here (web3's contract layer: ~10 eth_chainId calls, gas
estimation, fee history, a receipt poll and two price reads per swap), so 5 000 swaps take
10 minutes.  This sends the same swaps (DevPeriphery.swapV2/swapV3 from the trader, sized by
traffic.py's pure functions: log-uniform small swaps, leaning back toward the seeded price)
with one batched state read and one eth_sendTransaction (explicit gas: no estimate) per swap
through engine/chain/rpc.py's keep-alive client: ~3-6 ms a swap.  It does not wait for the
receipt (anvil's automine mines each transaction in a block of its own, just after answering);
`settle` waits until its pool is empty and `failed` checks the receipts in batches.  Only small
swaps: a benchmark wants many records, not big moves.

A run of thousands of blocks wants the devnet started with `anvil_args=("--prune-history",
"256")`: without it anvil begins writing old states to disk after ~600 blocks and mines ~7x
slower (180 → 25 blocks/s here), so the transactions pile up in its pool.
"""
from __future__ import annotations

import random
import time

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from engine.arb.v3 import Q96
from engine.chain.rpc import RpcClient, RpcError

from .traffic import SMALL_V2, SMALL_V3, leans_back, v2_amount_in, v3_amount_in


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


_GET_RESERVES = "0x" + _selector("getReserves()").hex()
_SLOT0 = "0x" + _selector("slot0()").hex()
_LIQUIDITY = "0x" + _selector("liquidity()").hex()
_SWAP_V2 = _selector("swapV2(address,address,uint256,uint256,address)")
_SWAP_V3 = _selector("swapV3(address,bool,uint256,address)")
GAS = hex(3_000_000)          # far above any devnet swap; no eth_estimateGas round trip


class LeanTraffic:
    """Small random swaps on one chain of a running devnet (see the module docstring)."""

    def __init__(self, manifest: dict, chain: str, *, seed: int = 0, timeout: float = 30.0):
        c = manifest["chains"].get(chain)
        if c is None:
            raise ValueError(f"the manifest has no chain {chain!r} "
                             f"(it has {', '.join(manifest['chains'])})")
        self.chain, self.pools = chain, list(c["pools"])
        self.rng = random.Random(seed)
        self.rpc = RpcClient(c["rpc_url"], timeout=timeout)
        self.periphery = c["contracts"]["periphery"]
        self.trader = c["accounts"]["trader"]
        self._start: dict[str, float] = {}
        self.sent = 0

    def _state(self, pool: dict):
        a = pool["address"]
        if pool["kind"] == "v2":
            r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"],
                                   self.rpc.eth_call(a, _GET_RESERVES))
            return r1 / r0, (r0, r1)
        slot0, liq = self.rpc.batch([("eth_call", [{"to": a, "data": _SLOT0}, "latest"]),
                                     ("eth_call", [{"to": a, "data": _LIQUIDITY}, "latest"])])
        for r in (slot0, liq):
            if isinstance(r, RpcError):
                raise r
        sp = int(slot0[2:66], 16)
        return (sp / Q96) ** 2, (sp, int(liq, 16))

    def step(self) -> str:
        """Send one small swap on a random pool; its transaction hash."""
        rng = self.rng
        pool = rng.choice(self.pools)
        price, st = self._state(pool)
        start = self._start.setdefault(pool["address"], price)
        zero_for_one = leans_back(price, start, rng.random()) if price != start \
            else rng.random() < 0.5
        if pool["kind"] == "v2":
            amount = v2_amount_in(st[0] if zero_for_one else st[1], 10 ** rng.uniform(*SMALL_V2))
            token_in = pool["token0"] if zero_for_one else pool["token1"]
            data = _SWAP_V2 + abi_encode(["address", "address", "uint256", "uint256", "address"],
                                         [pool["address"], token_in, amount, pool["fee"],
                                          self.trader])
        else:
            amount = v3_amount_in(st[0], st[1], zero_for_one, 10 ** rng.uniform(*SMALL_V3),
                                  pool["fee"])
            data = _SWAP_V3 + abi_encode(["address", "bool", "uint256", "address"],
                                         [pool["address"], zero_for_one, amount, self.trader])
        tx = self.rpc.call("eth_sendTransaction", [{"from": self.trader, "to": self.periphery,
                                                    "data": "0x" + data.hex(), "gas": GAS}])
        self.sent += 1
        return tx.lower()

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until anvil's pool is empty (everything sent is mined); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.rpc.call("txpool_status")
            if int(st.get("pending", "0x0"), 16) == 0 and int(st.get("queued", "0x0"), 16) == 0:
                return True
            time.sleep(0.05)
        return False

    def failed(self, txs: list[str]) -> list[str]:
        """The transactions among `txs` that reverted or have no receipt."""
        out = []
        for i in range(0, len(txs), 100):
            chunk = txs[i:i + 100]
            got = self.rpc.batch([("eth_getTransactionReceipt", [t]) for t in chunk])
            out += [t for t, r in zip(chunk, got)
                    if isinstance(r, RpcError) or not r or r.get("status") != "0x1"]
        return out

    def close(self) -> None:
        self.rpc.close()
