"""The Python side of contracts/FlashArbExecutor.sol: calldata, simulation, sending, outcome.

    Action (engine/arb/types.py)
      │ encode_execute()            calldata for execute(hops, loan, minProfit, deadlineBlock)
      ▼
    Executor.simulate(action)       eth_call from the sender: the profit it would make, or the
      │                             decoded revert (InsufficientProfit(...), Error(string), ...)
      ▼
    Executor.send(action)           paper mode (the default): nothing is sent, the simulation is
      │                             the outcome.  Live: signed by a Signer and broadcast
      ▼
    Executor.outcome(receipt)       the Executed event: borrowed, repaid, amount out, profit

Signers: `NodeSigner(address)` lets the node sign (anvil's unlocked dev accounts: devnet and
tests only); `KeySigner.from_env(VAR)` reads a private key from the environment, never from a
file or engine.toml, and never prints it.  Without a signer, `send` refuses unless paper.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector, keccak

from engine.arb.types import Action, Loan, LoanSource, PoolKind, Route
from engine.chain.contracts import deploy, load

KEY_ENV = "SYNDICATE_EXECUTOR_KEY"
LOAN_CODE = {LoanSource.UNISWAP_V2: 0, LoanSource.UNISWAP_V3: 1, LoanSource.BALANCER: 2,
             LoanSource.AAVE: 3}
KIND_CODE = {PoolKind.V2: 0, PoolKind.V3: 1}
_SOURCE_BY_CODE = {v: k for k, v in LOAN_CODE.items()}


# ---- calldata -------------------------------------------------------------------------------

def hops_arg(route: Route) -> list[tuple]:
    """The contract's Hop[]: (pool, tokenIn, tokenOut, kind, fee).  V2 fee in basis points."""
    return [(h.pool, h.token_in, h.token_out, KIND_CODE[PoolKind(h.kind)],
             h.fee if PoolKind(h.kind) is PoolKind.V2 else 0) for h in route.hops]


def loan_arg(loan: Loan) -> tuple:
    return (LOAN_CODE[LoanSource(loan.source)], loan.lender, loan.token, loan.amount, loan.fee)


def _contract(w3, address: str | None = None):
    return load("FlashArbExecutor").contract(w3, address)


_EXECUTE_TYPES = ["(address,address,address,uint8,uint24)[]", "(uint8,address,address,uint256,uint256)",
                  "uint256", "uint256"]


@lru_cache(maxsize=1)
def _execute_selector() -> bytes:
    fn = next(i for i in load("FlashArbExecutor").abi if i.get("name") == "execute")
    return function_abi_to_4byte_selector(fn)


def encode_execute(action: Action) -> bytes:
    """Calldata of execute(hops, loan, minProfit, deadlineBlock) for `action`, written word by
    word: every type in it is static but the Hop[] (a head of 8 words, its offset first, then
    the array), so this is byte for byte what eth_abi encodes (tests/chain/test_executor.py
    checks it against eth_abi.encode with _EXECUTE_TYPES) in ~10 µs against eth_abi's ~120 µs
    (web3's contract encoder: ~2 ms).  A value out of its type's range is a ValueError naming
    the field."""
    loan, hops = action.loan, action.route.hops
    code, lender, token, amount, fee = loan_arg(loan)
    out = [_execute_selector(), _HOPS_OFFSET, _uint(code, 8, "loan.source"),
           _address(lender, "loan.lender"), _address(token, "loan.token"),
           _uint(amount, 256, "loan.amount"), _uint(fee, 256, "loan.fee"),
           _uint(action.min_profit, 256, "min_profit"),
           _uint(action.deadline_block, 256, "deadline_block"), len(hops).to_bytes(32, "big")]
    for i, (pool, t_in, t_out, kind, hop_fee) in enumerate(hops_arg(action.route)):
        out += (_address(pool, f"hops[{i}].pool"), _address(t_in, f"hops[{i}].token_in"),
                _address(t_out, f"hops[{i}].token_out"), _uint(kind, 8, f"hops[{i}].kind"),
                _uint(hop_fee, 24, f"hops[{i}].fee"))
    return b"".join(out)


_HOPS_OFFSET = (8 * 32).to_bytes(32, "big")     # the head: this offset, loan (5 words), 2 uint256
_PAD = bytes(12)


def _uint(v, bits: int, what: str) -> bytes:
    if type(v) is not int or v < 0 or v >> bits:
        raise ValueError(f"calldata: {what} = {v!r} is not a uint{bits}")
    return v.to_bytes(32, "big")


def _address(a, what: str) -> bytes:
    try:
        raw = bytes.fromhex(a[2:]) if isinstance(a, str) and a[:2] in ("0x", "0X") else b""
    except ValueError:
        raw = b""
    if len(raw) != 20 or len(a) != 42:
        raise ValueError(f"calldata: {what} = {a!r} is not a 0x-prefixed 20-byte address")
    return _PAD + raw


# ---- reverts --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for item in load("FlashArbExecutor").abi:
        if item["type"] == "error":
            types = [i["type"] for i in item["inputs"]]
            table[function_abi_to_4byte_selector(item)] = (item["name"], types)
    table[keccak(text="Error(string)")[:4]] = ("Error", ["string"])
    table[keccak(text="Panic(uint256)")[:4]] = ("Panic", ["uint256"])
    return table


def decode_revert(data: bytes | str | None) -> str:
    """A revert's return data as text: 'InsufficientProfit(12, 100)', 'Error(UniswapV2: K)'."""
    if data is None:
        return "reverted without data"
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x"))
    if len(data) < 4:
        return "reverted without data" if not data else f"revert 0x{data.hex()}"
    entry = _error_table().get(data[:4])
    if entry is None:
        return f"revert 0x{data.hex()}"
    name, types = entry
    try:
        values = abi_decode(types, data[4:]) if types else ()
    except Exception:  # malformed payload: show the raw bytes rather than fail
        return f"{name}(0x{data[4:].hex()})"
    return f"{name}({', '.join(str(v) for v in values)})"


def trace_reason(trace) -> str | None:
    """Why a traced transaction reverted, from debug_traceTransaction's callTracer frame: the
    decoded revert data, else its error (out of gas, an invalid opcode); None if it says nothing."""
    if not isinstance(trace, dict):
        return None
    out = trace.get("output")
    if out and out != "0x":
        return decode_revert(out)
    if trace.get("error"):
        return f"{trace['error']} (gas used {int(str(trace.get('gasUsed', '0x0')), 16)} " \
               f"of {int(str(trace.get('gas', '0x0')), 16)})"
    return None


def _revert_data(exc: Exception) -> bytes | None:
    """Dig the revert payload out of whatever web3 raised."""
    for cand in (getattr(exc, "data", None), *(getattr(exc, "args", ()) or ())):
        if isinstance(cand, dict):
            cand = cand.get("data")
        if isinstance(cand, (bytes, bytearray)):
            return bytes(cand)
        if isinstance(cand, str) and cand.startswith("0x"):
            try:
                return bytes.fromhex(cand[2:])
            except ValueError:
                continue
    return None


# ---- signers --------------------------------------------------------------------------------

class NodeSigner:
    """The node signs (eth_sendTransaction): anvil's unlocked accounts, devnet and tests only."""

    def __init__(self, address: str):
        self.address = address

    def send(self, w3, tx: dict) -> bytes:
        return bytes(w3.eth.send_transaction({**tx, "from": self.address}))


class KeySigner:
    """A local private key.  Build it with `from_env`; the key is never logged or repr'd."""

    def __init__(self, key: str):
        from eth_account import Account
        self._account = Account.from_key(key)
        self.address = self._account.address

    @classmethod
    def from_env(cls, var: str = KEY_ENV) -> "KeySigner":
        key = os.environ.get(var)
        if not key:
            raise LookupError(f"live sending needs a private key in the environment variable {var}")
        return cls(key)

    def __repr__(self) -> str:
        return f"KeySigner({self.address})"

    def send(self, w3, tx: dict) -> bytes:
        tx = {**tx, "from": self.address}
        tx.setdefault("nonce", w3.eth.get_transaction_count(self.address, "pending"))
        tx.setdefault("chainId", w3.eth.chain_id)
        signed = self._account.sign_transaction(tx)
        return bytes(w3.eth.send_raw_transaction(signed.raw_transaction))


# ---- the executor ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Simulation:
    ok: bool
    profit: int            # what the owner would receive (0 when not ok)
    error: str = ""        # decoded revert when not ok
    gas: int | None = None # eth_estimateGas when ok and asked for


@dataclass(frozen=True)
class Outcome:
    """What one execute transaction did, from its receipt."""
    tx: str
    status: int
    profit: int             # in the route's token; 0 when reverted
    token: str = ""
    source: LoanSource | None = None
    lender: str = ""
    borrowed: int = 0
    repaid: int = 0
    amount_out: int = 0
    gas_used: int = 0
    gas_cost_wei: int = 0
    paper: bool = False
    error: str = ""


class Executor:
    """A deployed FlashArbExecutor on one chain.  `signer=None` is paper mode: nothing is sent."""

    def __init__(self, w3, address: str, *, caller: str | None = None, signer=None):
        self.w3 = w3
        self.address = w3.to_checksum_address(address)
        self.contract = _contract(w3, self.address)
        self.signer = signer
        # eth_call's `from`: the signer's address, else the given caller (e.g. the owner)
        self.caller = signer.address if signer is not None else caller

    @classmethod
    def deploy(cls, w3, owner: str, *, signer=None) -> "Executor":
        """Deploy from an account the node signs for (devnet); `owner` becomes the owner."""
        c = deploy(w3, "FlashArbExecutor", sender=owner)
        return cls(w3, c.address, caller=owner, signer=signer)

    @property
    def paper(self) -> bool:
        return self.signer is None

    def _tx(self, action: Action) -> dict[str, Any]:
        return {"to": self.address, "data": "0x" + encode_execute(action).hex(),
                **({"from": self.caller} if self.caller else {})}

    def simulate(self, action: Action, *, estimate_gas: bool = False,
                 block: str | int = "latest") -> Simulation:
        """eth_call the action; the contract returns its profit or reverts with the reason."""
        tx = self._tx(action)
        try:
            raw = self.w3.eth.call(tx, block)
        except Exception as exc:  # web3 raises several types for a revert; decode them alike
            data = _revert_data(exc)
            return Simulation(False, 0, decode_revert(data) if data is not None else str(exc))
        (profit,) = abi_decode(["uint256"], bytes(raw))
        gas = self.w3.eth.estimate_gas(tx, block) if estimate_gas else None
        return Simulation(True, profit, "", gas)

    def send(self, action: Action, *, now: float | None = None) -> Outcome:
        """Paper mode: simulate only.  Live: send if the deadline has not passed, wait, decode."""
        if (now if now is not None else time.time()) > action.deadline:
            return Outcome("", 0, 0, paper=self.paper, error="deadline passed: not sent")
        if self.paper:
            sim = self.simulate(action)
            return Outcome("", 1 if sim.ok else 0, sim.profit, token=action.route.token,
                           source=LoanSource(action.loan.source), lender=action.loan.lender,
                           paper=True, error=sim.error)
        tx = self._tx(action)
        tx.update(gas=action.gas_limit, maxFeePerGas=action.max_fee_per_gas,
                  maxPriorityFeePerGas=action.max_priority_fee_per_gas)
        tx_hash = self.signer.send(self.w3, tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
        return self.outcome(receipt)

    def outcome(self, receipt) -> Outcome:
        """Decode an execute transaction's receipt (web3 8: errors=DISCARD skips other events)."""
        from web3.logs import DISCARD
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
        gas_used = receipt["gasUsed"]
        cost = gas_used * receipt.get("effectiveGasPrice", 0)
        if receipt["status"] != 1:
            return Outcome(tx, 0, 0, gas_used=gas_used, gas_cost_wei=cost, error="reverted")
        events = self.contract.events.Executed().process_receipt(receipt, errors=DISCARD)
        events = [e for e in events if e["address"] == self.address]
        if not events:
            return Outcome(tx, 1, 0, gas_used=gas_used, gas_cost_wei=cost, error="no Executed event")
        a = events[-1]["args"]
        return Outcome(tx, 1, a["profit"], token=a["token"], source=_SOURCE_BY_CODE[a["source"]],
                       lender=a["lender"], borrowed=a["borrowed"], repaid=a["repaid"],
                       amount_out=a["amountOut"], gas_used=gas_used, gas_cost_wei=cost)

    def set_allowed(self, who: str, ok: bool = True, *, sender: str) -> None:
        """Allow-list a sender (owner only; `sender` must be the owner, node-signed)."""
        h = self.contract.functions.setAllowed(who, ok).transact({"from": sender})
        r = self.w3.eth.wait_for_transaction_receipt(h, poll_latency=0.01)
        if r["status"] != 1:
            raise RuntimeError("setAllowed reverted (not the owner?)")
