"""What happens to a transaction after it was sent: receipts, cancels of stuck ones, restarts.

    poll_receipts (the executor's sending thread, every receipt_poll s)
      receipt of the transaction ─► "landed" (realised profit from its Transfer logs) |
                                    "reverted" (decoded reason: Expired(...) past its deadline)
      receipt of our cancel ──────► "replaced" (the cancel took the nonce; its gas counted)
      not mined within replace_after blocks:
        still in the node's pool ─► a cancel: 0-value transfer to ourselves at the same nonce,
                                    both fees bumped ≥ 13 % (the node's replacement rule) and
                                    over the live base fee; ledger "cancelling" (its hash)
                                    committed before it is sent; again after as many blocks,
                                    at most MAX_CANCELS times
        gone from the node ───────► "dropped" (nonce free again) or "replaced" (nonce used)
      no receipt within receipt_timeout ─► "dropped" / "replaced" (given up)

Why a cancel rather than a re-send: a trade not mined in a few blocks was priced on a state long
gone and its deadline block passes soon (the contract reverts `Expired`), so the cheapest safe
end is to take its nonce with a 21 000-gas transfer; the arbitrage itself is never sent again.

Restart (`_recover`): every open record (queued, signed, sent, cancelling) of the last
incarnation is looked up by hash, never sent again.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.chain.chaindesk import bump
from engine.chain.executor import decode_revert, trace_reason
from engine.chain.outcomes import read_receipt

MAX_CANCELS = 3
CANCEL_GAS = 21_000


@dataclass
class Pending:
    key: str
    chain: str
    tx_hash: str
    nonce: int
    token: str
    predicted: int
    sent_at: float
    private: bool = False      # sent where the public node cannot see it (its nonce counts)
    sent_block: int = 0        # the head when it was sent (0: unknown)
    max_fee: int = 0
    prio: int = 0
    cancel: str = ""           # our newest cancel's hash
    cancel_block: int = 0      # the head when that cancel was sent
    cancels: int = 0


class Tracking:
    """The Desk's receipt side (a mixin: the Desk holds chains, ledger, pending, signer)."""

    def poll_receipts(self, yield_to=None) -> list[dict]:
        """Look up every followed transaction once; the outcomes that became final.  With
        `yield_to` (the sending thread's "is a send waiting?"), stop between two lookups when
        it says so: a send does not wait behind the receipts (the rest are looked up at the
        next poll, first)."""
        done = []
        heads: dict[str, int | None] = {}
        for h, p in list(self.pending.items()):
            if yield_to is not None and yield_to():
                break
            self.pending.pop(h, None)
            self.pending[h] = p     # to the back: the ones not looked up yet come first next time
            cd = self.chains.get(p.chain)
            if cd is None:
                continue
            try:
                receipt = cd.rpc("eth_getTransactionReceipt", [h])
                cancel = cd.rpc("eth_getTransactionReceipt", [p.cancel]) if p.cancel and not receipt \
                    else None
            except Exception as e:   # the node is down: try again at the next poll
                self._note("receipt lookup failed", tx=h, error=str(e)[:120])
                continue
            if receipt:
                done.append(self._receipt(p, cd, receipt))
                continue
            if cancel:
                done.append(self._cancelled(p, cd, cancel))
                continue
            if p.chain not in heads:
                try:
                    heads[p.chain] = cd.read_head().number
                except Exception:
                    heads[p.chain] = None
            head = heads[p.chain]
            since = p.cancel_block or p.sent_block
            if head is not None and since and head - since >= self.replace_after \
                    and p.cancels < MAX_CANCELS and self.signer is not None:
                out = self._stuck(p, cd, head)
                if out is not None:
                    done.append(out)
            elif self.clock() - p.sent_at > self.receipt_timeout:
                done.append(self._timeout(p, cd))
        return done

    def _receipt(self, p: Pending, cd, receipt: dict) -> dict:
        facts = read_receipt(receipt, contract=cd.contract.address, owner=cd.owner, token=p.token)
        fields = {"block": facts.block, "gas_used": facts.gas_used,
                  "gas_cost_wei": str(facts.gas_cost_wei)}
        if p.cancel:
            fields["cancel"] = p.cancel        # sent, never mined: the nonce was ours first
        if facts.status == 1:
            return self._final(p, "landed", realised=facts.realised,
                               event_profit=facts.event_profit, **fields)
        return self._final(p, "reverted", reason=self._revert_reason(cd, h=p.tx_hash,
                                                                     block=facts.block), **fields)

    def _cancelled(self, p: Pending, cd, receipt: dict) -> dict:
        gas = int(receipt.get("gasUsed") or "0x0", 16) * int(receipt.get("effectiveGasPrice") or "0x0", 16)
        self._sync_nonce(p.chain)
        return self._final(p, "replaced", cancel=p.cancel, gas_cost_wei=str(gas),
                           block=int(receipt.get("blockNumber") or "0x0", 16),
                           reason=f"not mined within {self.replace_after} blocks: cancelled, nonce "
                                  f"{p.nonce} taken by our 0-value transfer {p.cancel}")

    def _stuck(self, p: Pending, cd, head: int) -> dict | None:
        """Not mined within replace_after blocks: cancel it if the node still holds it."""
        try:
            tx = cd.rpc("eth_getTransactionByHash", [p.tx_hash])
            gone = tx is None and (not p.cancel or cd.rpc("eth_getTransactionByHash", [p.cancel]) is None)
            if gone:
                latest = cd.latest_count()
            base = cd.read_head().base_fee
        except Exception as e:
            self._note("stuck transaction lookup failed", tx=p.tx_hash, error=str(e)[:120])
            return None
        if gone:      # nothing to replace: the node forgot it (and any cancel)
            state = "replaced" if latest > p.nonce else "dropped"
            why = (f"nonce {p.nonce} was used by another transaction" if state == "replaced" else
                   f"not mined within {self.replace_after} blocks and gone from the node's pool; "
                   f"nonce {p.nonce} is free again")
            out = self._final(p, state, reason=why)
            self._sync_nonce(p.chain)
            return out
        prev_fee, prev_prio = p.max_fee, p.prio
        prio = max(bump(prev_prio), self.priority_floor(p.chain))
        max_fee = max(bump(prev_fee), 2 * base + prio)
        tx = {"type": 2, "chainId": cd.setup.chain_id, "nonce": p.nonce, "to": self.signer.address,
              "value": 0, "data": "0x", "gas": CANCEL_GAS, "maxFeePerGas": max_fee,
              "maxPriorityFeePerGas": prio}
        raw, h = self.signer.sign(tx)
        self._led(p.key, "cancelling", {"tx": p.tx_hash, "chain": p.chain, "nonce": p.nonce,
                                        "cancel": h, "cancel_max_fee_per_gas": str(max_fee),
                                        "cancel_max_priority_fee_per_gas": str(prio),
                                        "blocks_waited": head - (p.cancel_block or p.sent_block)})
        p.cancels += 1
        p.cancel_block = head
        res = cd.policy.submit(raw, h, cd.setup.rpc)
        if not res.ok:    # the original may still be mined; try again after as many blocks
            self._note("cancel refused", tx=p.tx_hash, cancel=h, error=res.error[:200])
            return None
        p.cancel, p.max_fee, p.prio = h, max_fee, prio
        self._note("cancel sent", key=p.key, tx=p.tx_hash, cancel=h, nonce=p.nonce)
        return None

    def _revert_reason(self, cd, h: str, block: int) -> str:
        """Why a mined transaction reverted: its own trace (debug_traceTransaction, callTracer:
        the exact revert data), else its call replayed with eth_call on the state after its
        block (which has whatever moved ahead of it; its own revert changed nothing)."""
        try:
            why = trace_reason(cd.rpc("debug_traceTransaction", [h, {"tracer": "callTracer"}]))
            if why is not None:
                return why
        except Exception:
            pass   # not every node traces: replay instead
        try:
            tx = cd.rpc("eth_getTransactionByHash", [h])
            call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
            doc = cd.call("eth_call", [call, hex(block)])
        except Exception as e:
            return f"reverted (the replay failed: {type(e).__name__})"
        err = doc.get("error")
        if not err:
            return "reverted on chain; its replay after the block passes"
        data = err.get("data") if isinstance(err, dict) else None
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
            return decode_revert(data)
        return f"reverted ({str(err.get('message', err) if isinstance(err, dict) else err)[:120]})"

    def _timeout(self, p: Pending, cd) -> dict:
        try:
            tx = cd.rpc("eth_getTransactionByHash", [p.tx_hash])
            latest = cd.latest_count()
        except Exception as e:
            tx, latest = "unknown", -1
            self._note("timeout lookup failed", tx=p.tx_hash, error=str(e)[:120])
        if tx is None and latest > p.nonce:
            out = self._final(p, "replaced", reason=f"nonce {p.nonce} was used by another transaction")
        else:
            where = "still pending" if tx not in (None, "unknown") else "not known to the node"
            out = self._final(p, "dropped", reason=f"no receipt within {self.receipt_timeout:g} s "
                                                   f"({where}); no longer followed")
        self._sync_nonce(p.chain)
        return out

    def _recover(self, rec: dict) -> None:
        """A transaction the last incarnation queued, signed, sent or was cancelling: never
        sent again."""
        if rec.get("state") == "queued":     # never signed: nothing can be on the chain
            self._final_key(rec, "dropped", "queued, never signed (the executor stopped in "
                                            "between); not sent")
            return
        cd = self.chains.get(rec.get("chain"))
        if cd is None:
            return
        h = rec.get("tx")
        try:
            found = cd.rpc("eth_getTransactionByHash", [h])
        except Exception:
            found = "unknown"        # the node is down: follow it, the receipt poll decides
        p = Pending(rec["key"], rec["chain"], h, int(rec.get("nonce", 0)), rec.get("token", ""),
                    int(rec["predicted"] if rec.get("predicted") is not None
                        else rec.get("simulated") or 0), self.clock(),
                    private=str(rec.get("endpoint", "")).startswith("private"),
                    sent_block=int(rec.get("head_block") or 0),
                    max_fee=int(rec.get("cancel_max_fee_per_gas") or rec.get("max_fee_per_gas") or 0),
                    prio=int(rec.get("cancel_max_priority_fee_per_gas")
                             or rec.get("max_priority_fee_per_gas") or 0),
                    cancel=str(rec.get("cancel") or ""))
        if p.cancel:
            p.cancels, p.cancel_block = 1, p.sent_block
        if found is None and rec.get("state") == "signed":
            self._final(p, "dropped", reason="signed, never sent (the executor stopped in "
                                             "between); not sent again")
            return
        self.pending[h] = p
        self._note("recovered", key=p.key, tx=h, state=rec.get("state"))
