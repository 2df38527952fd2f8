"""One chain of the executor's desk: its node, contract, submission policy, nonce and head.

`ChainDesk` posts plain JSON-RPC over one keep-alive connection per thread (engine/chain/rpc.py:
web3's formatters cost ~20 ms a call here under load and a requests session ~0.8 ms, against
~0.3 ms for the whole eth_call on anvil), simulates the exact calldata on "pending", and keeps the
newest block header it read (`head`: number and base fee, for the fees and the deadline block).
Only the executor's sending thread (engine/chain/sender.py) calls it after start; a stop whose
thread has not yet let go polls from the main thread on a connection of its own.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from web3 import HTTPProvider, Web3

from engine.chain.executor import Executor as ExecutorContract, Simulation, decode_revert, encode_execute
from engine.chain.keys import live_refusal
from engine.chain.rpc import RpcClient, RpcError
from engine.chain.submit import SubmitPolicy

GWEI = 10**9
# The network's minimum priority fee (Polygon PoS refuses less than 25 gwei).
PRIORITY_FLOOR = {"polygon": 25 * GWEI}
BLOCK_TIME = {"arbitrum": 0.25, "base": 2.0, "polygon": 2.0}


@dataclass
class ChainSetup:
    chain: str
    rpc: str
    chain_id: int
    executor: str                     # the FlashArbExecutor address
    block_time: float = 2.0
    pools: frozenset = frozenset()    # known pools, lower case (empty: not checked)
    submit: dict = field(default_factory=dict)
    bid_priority: int | None = None   # the gas tasks' priority fee (research gas-trend), wei


@dataclass
class Head:
    number: int
    base_fee: int
    at: float                         # time.monotonic() when read


class ChainDesk:
    """One chain: web3, the contract, the submission policy, the next nonce, the head."""

    def __init__(self, setup: ChainSetup, signer, request_timeout: float):
        self.setup = setup
        self.w3 = Web3(HTTPProvider(setup.rpc, request_kwargs={"timeout": request_timeout}))
        self.signer = signer
        self.contract = ExecutorContract(self.w3, setup.executor)
        self.owner = self.contract.contract.functions.owner().call()
        self.contract.caller = signer.address if signer is not None else self.owner
        self.policy = SubmitPolicy.from_config(setup.chain, setup.chain_id, setup.submit,
                                               [setup.rpc], signer)
        self.nonce: int | None = None
        self._local = threading.local()          # .rpc: this thread's RpcClient
        self.timeout = request_timeout
        self.head: Head | None = None

    def _client(self) -> RpcClient:
        c = getattr(self._local, "rpc", None)
        if c is None:
            c = self._local.rpc = RpcClient(self.setup.rpc, timeout=self.timeout)
        return c

    def call(self, method: str, params: list) -> dict:
        """One JSON-RPC call, its whole answer (RpcError when the transport, the HTTP status or
        the body failed)."""
        doc = self._client().post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                  method)
        if not isinstance(doc, dict):
            raise RuntimeError(f"{method}: not a JSON-RPC answer")
        return doc

    def batch(self, calls: list[tuple[str, list]], meanwhile=None) -> list[dict | None] | None:
        """Several JSON-RPC calls in one request: each one's whole answer, in order (None for
        one the node left out); None when the node does not batch (an HTTP error, or an answer
        that is not a list).  `meanwhile()` runs once the request is written (RpcClient.post)."""
        try:
            docs = self._client().post([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                                        for i, (m, p) in enumerate(calls)], "batch",
                                       meanwhile=meanwhile)
        except RpcError as e:
            if not e.answered:
                raise                       # the node is unreachable: the caller says so
            return None
        if not isinstance(docs, list):
            return None
        by_id = {d.get("id"): d for d in docs if isinstance(d, dict)}
        return [by_id.get(i) for i in range(len(calls))]

    def rpc(self, method: str, params: list):
        doc = self.call(method, params)
        if doc.get("error"):
            err = doc["error"]
            raise RuntimeError(f"{method}: {err.get('message', err) if isinstance(err, dict) else err}")
        return doc.get("result")

    def read_head(self, max_age: float = 0.0) -> Head:
        """The newest block's number and base fee; the one read less than `max_age` s ago if
        there is one.  A node answering something else raises ValueError naming it."""
        h = self.head
        if h is not None and time.monotonic() - h.at < max_age:
            return h
        blk = self.rpc("eth_getBlockByNumber", ["latest", False])
        try:
            number, base = int(blk["number"], 16), int(blk.get("baseFeePerGas") or "0x0", 16)
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(f"{self.setup.chain}: eth_getBlockByNumber answered {str(blk)[:80]!r}") from None
        self.head = Head(number, base, time.monotonic())
        return self.head

    def simulate(self, action, data: bytes | None = None) -> Simulation:
        """eth_call of the exact calldata (`data`, else encoded here) on "pending" from our
        sender: the contract's profit, or its decoded revert."""
        return self._simulation(self.call("eth_call", [self._call_tx(action, data), "pending"]))

    def simulate_and_count(self, action, data: bytes | None = None,
                           meanwhile=None) -> tuple[Simulation, int | None]:
        """simulate() and our pending transaction count in one JSON-RPC batch (one round trip
        instead of two on the sending path); the count is None if the node failed that part.
        A node that does not batch (an answer that is not a list of both) costs a second call.
        `meanwhile()` runs while the node works on the batch (the desk signs then)."""
        answers = self.batch([("eth_call", [self._call_tx(action, data), "pending"]),
                              ("eth_getTransactionCount", [self.signer.address, "pending"])],
                             meanwhile)
        if answers is None or answers[0] is None:
            return self.simulate(action, data), None
        try:
            count = int(answers[1]["result"], 16)
        except (TypeError, KeyError, ValueError):
            count = None
        return self._simulation(answers[0]), count

    def _call_tx(self, action, data: bytes | None) -> dict:
        return {"from": self.contract.caller, "to": self.contract.address,
                "data": "0x" + (data if data is not None else encode_execute(action)).hex()}

    @staticmethod
    def _simulation(doc: dict) -> Simulation:
        if not isinstance(doc, dict):
            return Simulation(False, 0, f"eth_call: not a JSON-RPC answer: {str(doc)[:80]!r}")
        err = doc.get("error")
        if err:
            data = err.get("data") if isinstance(err, dict) else None
            if isinstance(data, dict):
                data = data.get("data")
            if isinstance(data, str) and data.startswith("0x"):
                return Simulation(False, 0, decode_revert(data))
            return Simulation(False, 0, str(err.get("message", err) if isinstance(err, dict) else err)[:200])
        res = str(doc.get("result") or "0x")
        if len(res) < 66:
            return Simulation(False, 0, f"eth_call returned {res[:80]!r}, not a profit")
        return Simulation(True, int(res[2:66], 16))

    def refusal(self) -> str | None:
        """Why this key must not trade here (live mode), or None."""
        me = self.signer.address
        allowed = self.contract.contract.functions.allowed(me).call()
        return live_refusal(me, self.rpc("web3_clientVersion", []), self.owner, allowed)

    def pending_count(self) -> int:
        return int(self.rpc("eth_getTransactionCount", [self.signer.address, "pending"]), 16)

    def latest_count(self) -> int:
        return int(self.rpc("eth_getTransactionCount", [self.signer.address, "latest"]), 16)


def price_fees(chain: str, base_fee: int, bid_priority: int | None, action_priority: int,
               headroom: int = 2) -> tuple[int, int]:
    """(max_fee_per_gas, max_priority_fee_per_gas) from the live base fee: the gas tasks'
    priority (else the Action's), never under the chain's floor; Arbitrum's sequencer ignores
    priority (first come, first served), so none is paid there."""
    if chain == "arbitrum":
        prio = 0
    else:
        prio = max(bid_priority if bid_priority is not None else action_priority,
                   PRIORITY_FLOOR.get(chain, 0))
    return headroom * base_fee + prio, prio


def bump(fee: int, pct: int = 13) -> int:
    """A replacement's fee: at least `pct` % over the one it replaces (geth and anvil take a
    replacement at the same nonce only with both fees ≥ 10 % higher), and at least 1 wei more."""
    return max(fee + 1, -(-fee * (100 + pct) // 100))
