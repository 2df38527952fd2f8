"""The validator: an independent exact re-quote of an Action on a replica of the chain's pools.

    agent (calculates)   search + profit + decision on its replica ──► Action (wire.action_record)
    executor (validates) action_from_record ──► requote(its own replica, action) ──► ok?
                         ──► eth_call of the executor contract on `pending` (the chain's word)

`requote` trusts nothing in the action but its amounts: every hop's pool must be in the graph
with the kind, tokens and fee the action says; each hop's output is recomputed with the pool's
own integer math on the graph's *current* state; the loan's fee is recomputed from the lender's
rule when a `LoanBook` is given.  Then

    profit    = out − repay            (repay = amount_in + loan fee; a V2 flash swap: amount_in)
    predicted = expected_out − repay   (what the agent computed the contract would keep)
    ok  iff   profit >= action.min_profit          (else the contract would revert)
         and  profit >= min_confidence × predicted  (the filter: both must agree within 95 %)

The agent runs the same function on its own replica as its Decider's simulator (it agrees with
itself exactly, confidence 1.0); the executor runs it on its replica, fed by the same rings but
applied by another process, before it spends an eth_call.  Pure: no I/O.
"""
from __future__ import annotations

from typing import NamedTuple

from engine.arb.graph import PoolGraph
from engine.arb.profit import LoanBook, is_flash_swap, loan_fee
from engine.arb.types import Action, LoanSource, PoolKind
from engine.arb.v2 import InsufficientLiquidity
from engine.arb.v3 import V3MathError

MIN_CONFIDENCE = 0.95


class Requote(NamedTuple):
    ok: bool
    reason: str            # "ok", or why not (names the hop or the figure)
    profit: int | None     # the contract's gain (out − repay) on this replica; None if unquotable
    confidence: float      # profit / predicted, clipped to [0, 1]; 0.0 when not quotable


def requote(graph: PoolGraph, action: Action, *, loans: LoanBook | None = None,
            min_confidence: float = MIN_CONFIDENCE) -> Requote:
    """Re-quote `action` on `graph`; see the module docstring for what must hold."""
    route, loan = action.route, action.loan
    pools = graph.pools
    for i, h in enumerate(route.hops):
        p = pools.get(h.pool)
        if p is None:
            return Requote(False, f"unknown pool: hop {i} {h.pool} is not in the replica", None, 0.0)
        if PoolKind(h.kind) is not p.kind:
            return Requote(False, f"hop {i} {h.pool}: kind {PoolKind(h.kind).value}, the pool is "
                                  f"{p.kind.value}", None, 0.0)
        if h.token_in not in p.tokens or h.token_out != p.other(h.token_in):
            return Requote(False, f"hop {i} {h.pool}: tokens {h.token_in} -> {h.token_out} are not "
                                  "the pool's", None, 0.0)
        if h.fee != p.fee:
            return Requote(False, f"hop {i} {h.pool}: fee {h.fee}, the pool charges {p.fee}",
                           None, 0.0)
    if loan.amount != action.amount_in:
        return Requote(False, f"loan amount {loan.amount} is not amount_in {action.amount_in}",
                       None, 0.0)
    flash = LoanSource(loan.source) is LoanSource.UNISWAP_V2 and loan.lender == route.hops[0].pool
    if loans is not None:
        reason = _loan_check(loans, action)
        if reason:
            return Requote(False, reason, None, 0.0)
    elif flash and loan.fee != 0:
        return Requote(False, f"a V2 flash swap on hop 0 carries no loan fee (got {loan.fee})",
                       None, 0.0)
    repay = action.amount_in + loan.fee
    a = action.amount_in
    try:
        for i, h in enumerate(route.hops):
            a = pools[h.pool].quote(h.token_in, a)
            if a <= 0:
                return Requote(False, f"hop {i} {h.pool} returns nothing", None, 0.0)
    except (InsufficientLiquidity, V3MathError) as e:
        return Requote(False, f"hop {i} {route.hops[i].pool} cannot fill: {e}", None, 0.0)
    profit = a - repay
    predicted = action.expected_out - repay
    confidence = 0.0 if predicted <= 0 else max(0.0, min(1.0, profit / predicted))
    if profit < action.min_profit:
        return Requote(False, f"re-quoted profit {profit} < min_profit {action.min_profit}",
                       profit, confidence)
    if predicted <= 0:
        return Requote(False, f"the action predicts no profit (expected_out − repay = {predicted})",
                       profit, confidence)
    if confidence < min_confidence:
        return Requote(False, f"re-quoted profit {profit} is {confidence:.4f} of the predicted "
                              f"{predicted} (< {min_confidence})", profit, confidence)
    return Requote(True, "ok", profit, confidence)


def _loan_check(loans: LoanBook, action: Action) -> str:
    """Why the action's loan is not one the book offers at the fee it says ("" if it is)."""
    loan = action.loan
    for o in loans.options(action.route):
        if o.source is not LoanSource(loan.source) or o.lender != loan.lender:
            continue
        fee = 0 if is_flash_swap(action.route, o) else loan_fee(o.source, loan.amount, o.fee_ppm)
        if fee != loan.fee:
            return f"loan fee {loan.fee} is not the lender's {fee} on {loan.amount}"
        return ""
    return (f"loan: {LoanSource(loan.source).value} {loan.lender} does not lend "
            f"{action.route.token} for this route")
