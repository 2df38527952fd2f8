"""An Action survives the trip through a ring record, and a tampered record is refused by field."""
from __future__ import annotations

import orjson
import pytest

from engine.arb.types import Action, Hop, Loan, LoanSource, PoolKind, Route
from engine.arb.wire import action_from_record, action_record

T0, T1 = "0x" + "11" * 20, "0x" + "22" * 20
P0, P1, VAULT = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20


def action() -> Action:
    route = Route((Hop(P0, PoolKind.V2, T0, T1, 30, "uni-v2"), Hop(P1, PoolKind.V3, T1, T0, 500, "uni-v3")))
    return Action(chain="base", route=route, amount_in=3 * 10**24, expected_out=3 * 10**24 + 7 * 10**20,
                  loan=Loan(LoanSource.BALANCER, VAULT, T0, 3 * 10**24, 0), min_profit=10**18,
                  expected_profit=6 * 10**20, gas_limit=228_000, max_fee_per_gas=2 * 10**9,
                  max_priority_fee_per_gas=10**8, deadline=1_900_000_000, event_id="base:0x1:0x2:3",
                  notes={"method": "closed-form"})


def test_round_trip_through_orjson():
    a = action()
    back = action_from_record(orjson.loads(orjson.dumps(action_record(a))))
    assert back == a
    rec = action_record(a)
    rec["min_profit"] = 5           # a plain JSON integer is a number too
    assert action_from_record(rec).min_profit == 5
    rec["min_profit"] = True
    with pytest.raises(ValueError, match="min_profit"):
        action_from_record(rec)


@pytest.mark.parametrize("path,value,why", [
    (("amount_in",), "-5", "negative"),
    (("amount_in",), "12", "is not the loan amount"),
    (("gas_limit",), "228000", "is not of type int"),
    (("gas_limit",), 10**9, "out of range"),
    (("route",), [], "empty"),
    (("route", 0, "pool"), "0xnope", "is not an address"),
    (("route", 1, "token_out"), T1, "does not end in the token"),
    (("route", 0, "kind"), "v4", "is not v2 or v3"),
    (("route", 0, "fee"), 10_000, "out of range"),
    (("loan", "source"), "flashbots", "not a known lender"),
    (("loan", "token"), T1, "is not the route's token"),
    (("max_priority_fee_per_gas",), str(3 * 10**9), "above max_fee_per_gas"),
    (("expected_out",), str(1 << 256), "does not fit 256 bits"),
    (("deadline",), None, "is not of type int"),
])
def test_tampered_fields_are_named(path, value, why):
    rec = orjson.loads(orjson.dumps(action_record(action())))
    d = rec
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    with pytest.raises(ValueError, match=why) as e:
        action_from_record(rec)
    assert str(e.value).startswith("action." + ".".join(str(p) if isinstance(p, str) else f"[{p}]"
                                                        for p in path[:1]))


def test_missing_field_is_named():
    rec = action_record(action())
    del rec["loan"]["lender"]
    with pytest.raises(ValueError, match=r"action\.loan\.lender: missing"):
        action_from_record(rec)
    with pytest.raises(ValueError, match="not an object"):
        action_from_record(["not", "a", "dict"])
