"""The executor's ledger: every Action's life in the `outcomes` database, and what a receipt says.

One Action is one key, `<source role>|<event>`; each step appends a record under the executor
role's prefix (`outcomes/<role>/<seq>`), and the newest record of a key is its state:

    queued    taken in the switch, handed to the sending thread (not waited for: nothing was
              signed yet, so a lost "queued" can never mean a double send)
    refused   never signed: bad record, stale, unknown chain/pool, simulation failed, not
              profitable after gas at the executor's own fees, halted
    paper     simulated only (mode = "paper"): what it would have made
    signed    recorded and committed BEFORE it is handed to any endpoint: tx hash, nonce
    sent      an endpoint took it (which one; the stage latencies in ms)
    cancelling  not mined within replace_after blocks: our cancel's hash (a 0-value transfer
              to ourselves at the same nonce), committed before the cancel is sent
    rejected  every endpoint refused it (their errors); the nonce is free again
    landed    mined, status 1: realised profit from the receipt's Transfer logs to the owner
    reverted  mined, status 0: the decoded revert reason; only gas was spent
    dropped   no receipt within the timeout, gone from the node's pool, or signed (queued)
              and never sent (found after a restart)
    replaced  another transaction of ours took its nonce (our cancel, or someone with the key)

Records carry no key material (the store refuses fields named like secrets anyway); a signed
transaction's hash is known before it is sent, so a restarted executor looks it up instead of
sending anything again (`Ledger.open_items`).
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_utils import keccak

FINAL = ("refused", "paper", "rejected", "landed", "reverted", "dropped", "replaced")
OPEN = ("queued", "signed", "sent", "cancelling")
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
EXECUTED = "0x" + keccak(text="Executed(address,uint8,address,uint256,uint256,uint256,uint256)").hex()


def _word_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


@dataclass(frozen=True)
class ReceiptFacts:
    """What an execute transaction's receipt proves."""
    status: int
    block: int
    gas_used: int
    gas_cost_wei: int
    realised: int            # route token moved from the executor contract to the owner
    event_profit: int | None  # the Executed event's profit, when it is there


def read_receipt(receipt: dict, *, contract: str, owner: str, token: str) -> ReceiptFacts:
    """A JSON-RPC receipt (hex strings) decoded: gas, and the token sent to the owner."""
    contract, owner, token = contract.lower(), owner.lower(), token.lower()
    realised, event_profit = 0, None
    for log in receipt.get("logs") or []:
        topics = [str(t).lower() for t in log.get("topics") or []]
        addr = str(log.get("address", "")).lower()
        if not topics:
            continue
        if topics[0] == TRANSFER and addr == token and len(topics) == 3 and \
                _word_address(topics[1]) == contract and _word_address(topics[2]) == owner:
            realised += int(log.get("data") or "0x0", 16)
        elif topics[0] == EXECUTED and addr == contract:
            data = bytes.fromhex(str(log.get("data", "0x"))[2:])
            try:
                _lender, _borrowed, _repaid, _out, profit = abi_decode(
                    ["address", "uint256", "uint256", "uint256", "uint256"], data)
                event_profit = profit
            except Exception:   # a malformed log must not hide the rest of the receipt
                pass
    gas_used = int(receipt.get("gasUsed") or "0x0", 16)
    price = int(receipt.get("effectiveGasPrice") or "0x0", 16)
    return ReceiptFacts(int(receipt.get("status") or "0x0", 16), int(receipt.get("blockNumber") or "0x0", 16),
                        gas_used, gas_used * price, realised, event_profit)


class Ledger:
    """The outcomes of one executor role, in its store (prefix = the role's name)."""

    def __init__(self, store, role: str):
        self.store, self.role = store, role

    def append(self, key: str, state: str, **fields) -> dict:
        """Committed before it returns: in the caller's thread when the writer lock is free
        (the executor's boosted sending thread need not wait for the store's writer thread,
        which runs in the background class), else by the writer thread."""
        rec = {"key": key, "state": state, **fields}
        if self.store is not None:
            self.store.append_many("outcomes", self.role, [rec], inline=True).result(30.0)
        return rec

    def append_nowait(self, key: str, state: str, **fields) -> tuple[dict, object]:
        """The record, and the store's job committing it (the writer thread's: never in the
        caller's thread; None without a store).  For the switch, which must not wait."""
        rec = {"key": key, "state": state, **fields}
        if self.store is None:
            return rec, None
        return rec, self.store.append_many("outcomes", self.role, [rec], inline=False)

    def history(self, limit: int = 200_000) -> dict[str, dict]:
        """key -> its newest record, over the last `limit` records."""
        out: dict[str, dict] = {}
        if self.store is None:
            return out
        with self.store.read() as r:
            last = r.last_seq("outcomes", self.role)
            for _, rec in r.records("outcomes", self.role, after_seq=max(0, last - limit)):
                if isinstance(rec, dict) and "key" in rec:
                    prev = out.get(rec["key"])
                    out[rec["key"]] = {**(prev or {}), **rec}   # fields accumulate over steps
        return out

    @staticmethod
    def open_items(history: dict[str, dict]) -> list[dict]:
        """Queued, signed, sent or cancelling, not yet final: to look up after a restart."""
        return [r for r in history.values() if r.get("state") in OPEN]

