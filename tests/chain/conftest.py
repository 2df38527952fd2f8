"""The devnet, once per session, and per-test isolation with evm_snapshot/evm_revert.

Tests use anvil's unlocked dev accounts by address (the node signs): account 0 deploys and makes
the price-moving swaps, 1 owns the executor, 2 is a stranger, 3 is allow-listed, 9 is the
traffic generator's trader.  No private key appears here.
"""
from __future__ import annotations

import pytest
from devnethelp import start_devnet

from engine.chain.contracts import load

OWNER, STRANGER, ALLOWED = 1, 2, 3


@pytest.fixture(scope="session")
def devnet():
    yield from start_devnet()


class Chain:
    """One devnet chain seen by a test: web3, manifest entry, accounts, lookups, executor."""

    def __init__(self, net, name: str):
        from engine.chain.executor import Executor
        self.name = name
        self.w3 = net.w3(name)
        self.m = net.manifest["chains"][name]
        accts = self.w3.eth.accounts
        self.deployer, self.owner = accts[0], accts[OWNER]
        self.stranger, self.allowed = accts[STRANGER], accts[ALLOWED]
        self.executor = Executor.deploy(self.w3, self.owner)
        self.erc20 = load("DevToken")
        self.periphery = load("DevPeriphery").contract(self.w3, self.m["contracts"]["periphery"])

    def token(self, symbol: str) -> str:
        return self.m["tokens"][symbol]["address"]

    def pool(self, dex: str, a: str, b: str, fee: int | None = None) -> dict:
        ta, tb = self.token(a), self.token(b)
        for p in self.m["pools"]:
            if p["dex"] == dex and {p["token0"], p["token1"]} == {ta, tb} and fee in (None, p["fee"]):
                return p
        raise KeyError(f"no {dex} {a}/{b} pool (fee {fee}) on {self.name}")

    def balance(self, token: str, who: str) -> int:
        return self.erc20.contract(self.w3, token).functions.balanceOf(who).call()

    def tx(self, fn, sender: str | None = None):
        h = fn.transact({"from": sender or self.deployer})
        r = self.w3.eth.wait_for_transaction_receipt(h, poll_latency=0.005)
        assert r["status"] == 1, f"setup transaction reverted: {h.hex()}"
        return r

    def swap(self, pool: dict, token_in_symbol: str, amount: int) -> None:
        """A price-moving swap by the deployer."""
        t_in = self.token(token_in_symbol)
        if pool["kind"] == "v2":
            self.tx(self.periphery.functions.swapV2(pool["address"], t_in, amount, pool["fee"], self.deployer))
        else:
            self.tx(self.periphery.functions.swapV3(pool["address"], t_in == pool["token0"], amount,
                                                    self.deployer))


@pytest.fixture(scope="session")
def chains(devnet):
    """One Chain per devnet chain, executor deployed once (before any snapshot)."""
    return {name: Chain(devnet, name) for name in devnet.chains}


@pytest.fixture
def arb(chains, devnet):
    """The arbitrum chain, reverted to its pre-test state afterwards; asserts the executor holds
    no token after the test."""
    c = chains["arbitrum"]
    snaps = {n: devnet.w3(n).provider.make_request("evm_snapshot", [])["result"] for n in devnet.chains}
    yield c
    for ch in chains.values():
        for sym, t in ch.m["tokens"].items():
            assert ch.balance(t["address"], ch.executor.address) == 0, f"executor kept {sym} on {ch.name}"
    for n, s in snaps.items():
        assert devnet.w3(n).provider.make_request("evm_revert", [s])["result"] is True
