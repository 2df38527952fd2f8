"""Contract artifacts (ABI + bytecode) and deployment.

Where the bytecode comes from:

    ours        contracts/build/<Name>.json          solc-js 0.8.37 (scripts/build_contracts.py)
    uniswap     node_modules/@uniswap/v2-core/build   UniswapV2Factory, UniswapV2Pair  (no 0x prefix)
                node_modules/@uniswap/v2-periphery/build   WETH9, UniswapV2Router02
                node_modules/@uniswap/v3-core/artifacts    UniswapV3Factory, UniswapV3Pool (0x prefix)
    balancer    node_modules/@balancer-labs/v2-deployments/dist/tasks   Vault, Authorizer
    aave        node_modules/@aave/core-v3/artifacts    Pool (+ 7 linked logic libraries),
                PoolAddressesProvider, ACLManager, PoolConfigurator, AToken, debt tokens, ...

Nothing is recompiled here: the Uniswap and Balancer bytecode is the bytes those projects
published (their init-code hashes are the real ones).  Deployment uses whatever account the
web3 instance can send from: an unlocked anvil account (eth_sendTransaction) or a local key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "contracts" / "build"
NODE_MODULES = ROOT / "node_modules"

_UNISWAP = {
    "UniswapV2Factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "WETH9": "@uniswap/v2-periphery/build/WETH9.json",
    "UniswapV2Router02": "@uniswap/v2-periphery/build/UniswapV2Router02.json",
    "UniswapV3Factory": "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
}
_BALANCER = {
    "Vault": "@balancer-labs/v2-deployments/dist/tasks/20210418-vault/artifact/Vault.json",
    "Authorizer": "@balancer-labs/v2-deployments/dist/tasks/20210418-authorizer/artifact/Authorizer.json",
}
_AAVE_DIR = "@aave/core-v3/artifacts/contracts/protocol/"
_AAVE = {name: f"{_AAVE_DIR}{sub}/{name}.sol/{name}.json" for sub, names in {
    "pool": ("Pool", "PoolConfigurator", "DefaultReserveInterestRateStrategy"),
    "configuration": ("PoolAddressesProvider", "ACLManager"),
    "tokenization": ("AToken", "StableDebtToken", "VariableDebtToken"),
    "libraries/logic": ("BorrowLogic", "BridgeLogic", "EModeLogic", "FlashLoanLogic",
                        "LiquidationLogic", "PoolLogic", "SupplyLogic", "ConfiguratorLogic"),
}.items() for name in names}


class ArtifactMissing(FileNotFoundError):
    """An artifact file is absent (node_modules not installed, or contracts not built)."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str          # creation code, 0x-prefixed hex
    source: str            # where it was read from, for messages
    links: tuple = ()      # ((library name, ((start, length), ...)), ...): placeholders to fill

    def link(self, libraries: dict[str, str]) -> "Artifact":
        """The creation code with each library placeholder replaced by its deployed address."""
        code = bytearray(bytes.fromhex(self.bytecode[2:].replace("_", "0").replace("$", "0"))) \
            if self.links else bytearray(bytes.fromhex(self.bytecode[2:]))
        for lib, spans in self.links:
            if lib not in libraries:
                raise KeyError(f"{self.name} needs library {lib}")
            addr = bytes.fromhex(libraries[lib].removeprefix("0x"))
            for start, length in spans:
                code[start:start + length] = addr
        return Artifact(self.name, self.abi, "0x" + code.hex(), self.source)

    def contract(self, w3, address: str | None = None):
        """A web3 contract object (a factory when address is None)."""
        if address is None:
            return w3.eth.contract(abi=self.abi, bytecode=self.bytecode)
        return w3.eth.contract(address=w3.to_checksum_address(address), abi=self.abi)


def _read(path: Path, name: str) -> Artifact:
    if not path.is_file():
        raise ArtifactMissing(f"{name}: {path} is missing (run `npm ci` and "
                              f"`python -m scripts.build_contracts` in {ROOT})")
    data = json.loads(path.read_text())
    code = data["bytecode"]
    if isinstance(code, dict):  # some build formats nest it
        code = code["object"]
    if not code.startswith("0x"):
        code = "0x" + code  # @uniswap/v2-core and v2-periphery artifacts have no prefix
    links = tuple((lib, tuple((r["start"], r["length"]) for r in refs))
                  for libs in (data.get("linkReferences") or {}).values() for lib, refs in libs.items())
    return Artifact(name, data["abi"], code, str(path), links)


@lru_cache(maxsize=None)
def load(name: str) -> Artifact:
    """Our artifact (contracts/build) or a known npm one, by contract name."""
    if name in _UNISWAP:
        return _read(NODE_MODULES / _UNISWAP[name], name)
    if name in _BALANCER:
        return _read(NODE_MODULES / _BALANCER[name], name)
    if name in _AAVE:
        return _read(NODE_MODULES / _AAVE[name], name)
    return _read(BUILD / f"{name}.json", name)


def toolchain_missing() -> str | None:
    """Why the on-chain parts cannot run here, or None when everything is installed."""
    anvil = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    if not anvil.is_file():
        return f"anvil is not installed ({anvil}): run `npm ci` in {ROOT}"
    for rel in list(_UNISWAP.values()) + list(_BALANCER.values()) + list(_AAVE.values()):
        if not (NODE_MODULES / rel).is_file():
            return f"{NODE_MODULES / rel} is missing: run `npm ci` in {ROOT}"
    if not (BUILD / "FlashArbExecutor.json").is_file():
        return f"{BUILD} has no FlashArbExecutor.json: run `python -m scripts.build_contracts`"
    return None


def deploy(w3, name_or_artifact: str | Artifact, *args, sender: str, gas: int | None = None):
    """Deploy and wait for the receipt; return the web3 contract at its address.

    `sender` must be an account the node will sign for (anvil's unlocked dev accounts).  Live
    deployment with a private key is deliberately not offered here.
    """
    art = load(name_or_artifact) if isinstance(name_or_artifact, str) else name_or_artifact
    if art.links and "__" in art.bytecode:
        raise ValueError(f"{art.name} has unlinked libraries: deploy them and use .link()")
    tx: dict[str, Any] = {"from": sender}
    if gas is not None:
        tx["gas"] = gas
    tx_hash = art.contract(w3).constructor(*args).transact(tx)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise RuntimeError(f"deploying {art.name} reverted (tx {tx_hash.hex()})")
    return art.contract(w3, receipt["contractAddress"])
