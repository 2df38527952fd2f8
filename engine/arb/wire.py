"""An `Action` as it travels between processes: an orjson-ready dict and back, checked.

The agent that decides publishes `action_record(action)` in its outbox record; the executor
rebuilds the Action with `action_from_record(rec)` before it simulates, signs or sends anything.
Every uint256 travels as a decimal string (orjson refuses integers over 64 bits); addresses as
0x-hex.  `action_from_record` trusts nothing: a missing field, a wrong type, a negative amount,
a route that does not close or a loan in another token raises `ValueError` naming the field, so
a malformed or tampered record is refused with its reason instead of reaching the chain.
"""
from __future__ import annotations

import re

from .types import Action, Hop, Loan, LoanSource, PoolKind, Route

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_UINT256 = (1 << 256) - 1


def action_record(a: Action) -> dict:
    """Everything the executor needs, orjson-ready."""
    return {
        "chain": a.chain,
        "route": [{"pool": h.pool, "kind": PoolKind(h.kind).value, "token_in": h.token_in,
                   "token_out": h.token_out, "fee": h.fee, "dex": h.dex} for h in a.route.hops],
        "loan": {"source": LoanSource(a.loan.source).value, "lender": a.loan.lender,
                 "token": a.loan.token, "amount": str(a.loan.amount), "fee": str(a.loan.fee)},
        "amount_in": str(a.amount_in), "expected_out": str(a.expected_out),
        "min_profit": str(a.min_profit), "expected_profit": str(a.expected_profit),
        "gas_limit": a.gas_limit, "max_fee_per_gas": str(a.max_fee_per_gas),
        "max_priority_fee_per_gas": str(a.max_priority_fee_per_gas),
        "deadline": a.deadline, "deadline_block": a.deadline_block, "event_id": a.event_id,
        "notes": {k: v for k, v in a.notes.items() if isinstance(v, (str, int, float, bool))},
    }


def action_from_record(rec: dict) -> Action:
    """The Action `rec` describes; ValueError naming the first field that is wrong."""
    if not isinstance(rec, dict):
        raise ValueError(f"action: not an object ({type(rec).__name__})")
    chain = _field(rec, "chain", str)
    hops_in = _field(rec, "route", list)
    if not hops_in:
        raise ValueError("action.route: empty")
    hops = []
    for i, h in enumerate(hops_in):
        where = f"action.route[{i}]"
        if not isinstance(h, dict):
            raise ValueError(f"{where}: not an object")
        try:
            kind = PoolKind(_field(h, "kind", str, where))
        except ValueError:
            raise ValueError(f"{where}.kind: {h.get('kind')!r} is not v2 or v3") from None
        fee = _field(h, "fee", int, where)
        if not 0 <= fee < (10_000 if kind is PoolKind.V2 else 1_000_000):
            raise ValueError(f"{where}.fee: {fee} out of range for a {kind.value} pool")
        hops.append(Hop(pool=_address(h, "pool", where), kind=kind,
                        token_in=_address(h, "token_in", where),
                        token_out=_address(h, "token_out", where), fee=fee,
                        dex=str(h.get("dex") or "")))
    try:
        route = Route(tuple(hops))
    except ValueError as e:
        raise ValueError(f"action.route: {e}") from None
    if not route.is_cycle:
        raise ValueError("action.route: does not end in the token it starts with")
    ln = _field(rec, "loan", dict)
    try:
        source = LoanSource(_field(ln, "source", str, "action.loan"))
    except ValueError:
        raise ValueError(f"action.loan.source: {ln.get('source')!r} is not a known lender") from None
    loan = Loan(source=source, lender=_address(ln, "lender", "action.loan"),
                token=_address(ln, "token", "action.loan"),
                amount=_uint(ln, "amount", "action.loan"), fee=_uint(ln, "fee", "action.loan"))
    if loan.token.lower() != route.token.lower():
        raise ValueError(f"action.loan.token: {loan.token} is not the route's token {route.token}")
    amount_in = _uint(rec, "amount_in")
    if amount_in != loan.amount:
        raise ValueError(f"action.amount_in: {amount_in} is not the loan amount {loan.amount}")
    gas_limit = _field(rec, "gas_limit", int)
    if not 21_000 <= gas_limit <= 30_000_000:
        raise ValueError(f"action.gas_limit: {gas_limit} out of range")
    prio, max_fee = _uint(rec, "max_priority_fee_per_gas"), _uint(rec, "max_fee_per_gas")
    if prio > max_fee:
        raise ValueError(f"action.max_priority_fee_per_gas: {prio} above max_fee_per_gas {max_fee}")
    deadline_block = rec.get("deadline_block", 0)     # optional: the executor sets its own
    if not isinstance(deadline_block, int) or isinstance(deadline_block, bool) \
            or not 0 <= deadline_block < 1 << 63:
        raise ValueError(f"action.deadline_block: {deadline_block!r:.60} is not a block number")
    notes = rec.get("notes") or {}
    if not isinstance(notes, dict):
        raise ValueError("action.notes: not an object")
    return Action(chain=chain, route=route, amount_in=amount_in,
                  expected_out=_uint(rec, "expected_out"), loan=loan,
                  min_profit=_uint(rec, "min_profit"),
                  expected_profit=_int(rec, "expected_profit"), gas_limit=gas_limit,
                  max_fee_per_gas=max_fee, max_priority_fee_per_gas=prio,
                  deadline=_field(rec, "deadline", int), event_id=str(rec.get("event_id") or ""),
                  deadline_block=deadline_block, notes=dict(notes))


def _field(d: dict, name: str, typ, where: str = "action"):
    if name not in d:
        raise ValueError(f"{where}.{name}: missing")
    v = d[name]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        names = "/".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise ValueError(f"{where}.{name}: {v!r:.60} is not of type {names}")
    return v


def _address(d: dict, name: str, where: str) -> str:
    v = _field(d, name, str, where)
    if not _ADDRESS.match(v):
        raise ValueError(f"{where}.{name}: {v!r:.60} is not an address")
    return v


def _int(d: dict, name: str, where: str = "action") -> int:
    v = _field(d, name, (str, int), where)
    if isinstance(v, bool):
        raise ValueError(f"{where}.{name}: {v!r} is not a number")
    try:
        n = int(v)
    except ValueError:
        raise ValueError(f"{where}.{name}: {v!r:.60} is not a decimal integer") from None
    if abs(n) > _UINT256:
        raise ValueError(f"{where}.{name}: {v!r:.60} does not fit 256 bits")
    return n


def _uint(d: dict, name: str, where: str = "action") -> int:
    n = _int(d, name, where)
    if n < 0:
        raise ValueError(f"{where}.{name}: {n} is negative")
    return n
