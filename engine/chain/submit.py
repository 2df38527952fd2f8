"""Where a signed transaction goes: a chain's submission policy, `[chains.<name>.submit]`.

    signed raw tx ──► endpoint 1 ──ok──► SubmitResult(endpoint, tx hash)
                          │ unreachable, refused, or (timeboost) not our round
                          ▼
                      endpoint 2 ... ──► every one failed: SubmitResult(ok=False, errors)

Endpoint kinds and their wire formats:
- `sequencer` / `public`: `eth_sendRawTransaction ["0x<raw>"]` (Arbitrum's and Base's sequencer
  endpoints take plain raw transactions; Polygon's public mempool too).
- `private`: bloXroute's Cloud API `polygon_private_tx` (docs.bloxroute.com/polygon/
  submit-transactions/private-transactions): `params: {"transaction": "<raw hex, no 0x>"}`,
  `Authorization: <account auth header>` (taken from the variable `auth_env` names), result
  `{"txHash": "0x…"}`.  `method = "eth_sendRawTransaction"` makes it any private RPC that
  takes raw transactions (e.g. a Polygon private-mempool endpoint).
- `timeboost`: Arbitrum's express lane, `timeboost_sendExpressLaneTransaction` (docs.arbitrum.io
  how-arbitrum-works/timeboost/how-to-use-timeboost): `params: [{chainId, round,
  auctionContractAddress, sequenceNumber, transaction, options: {}, signature}]`, the signature
  an EIP-191 personal signature of keccak256("TIMEBOOST_BID") ‖ chainId (32 bytes) ‖ auction
  contract ‖ round (8 bytes) ‖ sequenceNumber (8 bytes) ‖ the raw transaction; an empty result
  means accepted.  Used only when configured *and* our controller holds the current round
  (read from the auction contract: `currentRound()`, `resolvedRounds()`); no bidding.  The
  per-round sequence number starts at 0 and moves on only when the sequencer accepted one.

A failure is never a crash: each endpoint's error is kept, and the next endpoint is tried.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from eth_abi import decode as abi_decode
from eth_utils import keccak

from engine.chain.rpc import RpcClient, RpcError

KINDS = ("sequencer", "public", "private", "timeboost")
# Each chain's endpoint when [chains.<name>.submit] names none: its first rpc URL.
DEFAULT_KIND = {"arbitrum": "sequencer", "base": "sequencer", "polygon": "public"}
_SEL_CURRENT_ROUND = "0x" + keccak(text="currentRound()")[:4].hex()
_SEL_RESOLVED = "0x" + keccak(text="resolvedRounds()")[:4].hex()
TIMEBOOST_DOMAIN = keccak(text="TIMEBOOST_BID")


@dataclass
class Endpoint:
    kind: str
    url: str
    method: str = ""            # private: "polygon_private_tx" (default) or "eth_sendRawTransaction"
    auth_env: str = ""          # the variable holding an Authorization header value
    auction: str = ""           # timeboost: the ExpressLaneAuction contract
    timeout: float = 2.0

    @classmethod
    def of(cls, d: dict) -> "Endpoint":
        return cls(kind=d["kind"], url=d["url"], method=d.get("method", ""),
                   auth_env=d.get("auth_env", ""), auction=d.get("auction", ""),
                   timeout=float(d.get("timeout", 2.0)))


@dataclass(frozen=True)
class SubmitResult:
    ok: bool
    endpoint: str = ""           # "kind url" of the one that took it
    tx_hash: str = ""
    errors: tuple[str, ...] = ()
    handed_ns: int = 0           # CLOCK_MONOTONIC ns when its request was on that one's socket

    @property
    def error(self) -> str:
        return "; ".join(self.errors)


class RpcFailure(Exception):
    pass


@dataclass
class SubmitPolicy:
    """The ordered endpoints of one chain.  `signer` signs express-lane submissions (the
    controller is the executor's own key)."""
    chain: str
    chain_id: int
    endpoints: list[Endpoint]
    signer: object = None
    _sessions: dict = field(default_factory=dict)
    _rounds: dict = field(default_factory=dict)   # auction -> [round, next sequence number]
    _tl: threading.local = field(default_factory=threading.local)   # this thread's last client

    @classmethod
    def from_config(cls, chain: str, chain_id: int, submit: dict, rpc: list[str],
                    signer=None) -> "SubmitPolicy":
        eps = [Endpoint.of(e) for e in submit.get("endpoints") or []]
        if not eps and rpc:
            eps = [Endpoint(DEFAULT_KIND[chain], rpc[0])]
        return cls(chain, chain_id, eps, signer)

    def describe(self) -> list[str]:
        return [f"{e.kind} {e.url}" for e in self.endpoints]

    def submit(self, raw: bytes, tx_hash: str, rpc_url: str | None = None) -> SubmitResult:
        """Hand `raw` to the first endpoint that takes it.  `rpc_url` answers the timeboost
        round check (default: the endpoint's own URL)."""
        errors = []
        for ep in self.endpoints:
            name = f"{ep.kind} {ep.url}"
            try:
                if ep.kind == "timeboost":
                    why = self._timeboost(ep, raw, rpc_url or ep.url)
                    if why:
                        errors.append(f"{name}: {why}")
                        continue
                elif ep.kind == "private" and (ep.method or "polygon_private_tx") == "polygon_private_tx":
                    res = self._call(ep, "polygon_private_tx", {"transaction": raw.hex()})
                    got = res.get("txHash") if isinstance(res, dict) else res
                    if got and str(got).lower() != tx_hash.lower():
                        errors.append(f"{name}: answered tx hash {got}, not {tx_hash}")
                        continue
                else:
                    self._call(ep, "eth_sendRawTransaction", ["0x" + raw.hex()])
            except RpcFailure as e:
                if _already_known(str(e)):
                    return SubmitResult(True, name, tx_hash, tuple(errors), self._written())
                errors.append(f"{name}: {e}")
                continue
            return SubmitResult(True, name, tx_hash, tuple(errors), self._written())
        if not self.endpoints:
            errors.append(f"{self.chain}: no submission endpoint")
        return SubmitResult(False, "", tx_hash, tuple(errors))

    # -- the wire ------------------------------------------------------------------------------
    def _written(self) -> int:
        """When this thread's last request was on its endpoint's socket (monotonic ns)."""
        client = getattr(self._tl, "written", None)
        return client.written_ns if client is not None else 0

    def _call(self, ep: Endpoint, method: str, params, url: str | None = None):
        url = url or ep.url
        key = (threading.get_ident(), url, ep.timeout)    # one keep-alive connection each
        client = self._sessions.get(key)
        if client is None:
            try:
                client = self._sessions[key] = RpcClient(url, timeout=ep.timeout)
            except ValueError as e:
                raise RpcFailure(str(e)) from None
        headers = None
        if ep.auth_env:
            auth = os.environ.get(ep.auth_env)
            if not auth:
                raise RpcFailure(f"environment variable {ep.auth_env} (its Authorization) is not set")
            headers = {"Authorization": auth}
        self._tl.written = client
        try:
            doc = client.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                              method, headers)
        except RpcError as e:     # "HTTP 429 Too Many Requests: …", "answer is not JSON: …"
            raise RpcFailure((e.message if e.answered else f"unreachable: {e.message}")[:200]) from None
        if not isinstance(doc, dict):
            raise RpcFailure(f"not a JSON-RPC answer: {str(doc)[:80]}")
        if doc.get("error"):
            err = doc["error"]
            raise RpcFailure(str(err.get("message", err) if isinstance(err, dict) else err)[:200])
        return doc.get("result")

    def _timeboost(self, ep: Endpoint, raw: bytes, rpc_url: str) -> str:
        """Send through the express lane; '' when accepted, else why not (then the next
        endpoint is tried)."""
        if self.signer is None or not ep.auction:
            return "needs the executor's key and the auction contract"
        me = self.signer.address.lower()
        try:
            rnd = int(self._call(ep, "eth_call", [{"to": ep.auction, "data": _SEL_CURRENT_ROUND},
                                                  "latest"], rpc_url), 16)
            resolved = bytes.fromhex(str(self._call(
                ep, "eth_call", [{"to": ep.auction, "data": _SEL_RESOLVED}, "latest"],
                rpc_url))[2:])
            (c0, r0), (c1, r1) = abi_decode(["(address,uint64)", "(address,uint64)"], resolved)
        except (RpcFailure, ValueError, TypeError) as e:
            return f"cannot read the round: {e}"
        controller = next((c for c, r in ((c0, r0), (c1, r1)) if r == rnd), None)
        if controller is None or controller.lower() != me:
            return f"round {rnd}: our controller does not hold it (no bidding)"
        state = self._rounds.setdefault(ep.auction, [rnd, 0])
        if state[0] != rnd:
            state[:] = [rnd, 0]
        seq = state[1]
        payload = (TIMEBOOST_DOMAIN + self.chain_id.to_bytes(32, "big") + bytes.fromhex(
            ep.auction[2:]) + rnd.to_bytes(8, "big") + seq.to_bytes(8, "big") + raw)
        sub = {"chainId": hex(self.chain_id), "round": hex(rnd), "auctionContractAddress": ep.auction,
               "sequenceNumber": hex(seq), "transaction": "0x" + raw.hex(), "options": {},
               "signature": self.signer.sign_message(payload)}
        self._call(ep, "timeboost_sendExpressLaneTransaction", [sub])   # RpcFailure: next one
        state[1] = seq + 1
        return ""


def _already_known(msg: str) -> bool:
    """The node has this very transaction already (a retry after a lost answer)."""
    m = msg.lower()
    return "already known" in m or "already imported" in m or "known transaction" in m

