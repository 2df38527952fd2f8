"""Role kinds in isolation: the executor acts on each (role, event) once, whatever the delivery,
and only on approved opportunities (a refusal is acknowledged, never executed)."""
from __future__ import annotations

from types import SimpleNamespace

from engine.chain.desk import Desk
from engine.chain.outcomes import Ledger
from roles.agents import Executor


def rt(**options):
    return SimpleNamespace(name="r", config=SimpleNamespace(options=options, chains=[]), log=None)


def opportunity(role, event, approved=True):
    return {"kind": "opportunity", "approved": approved, "role": role, "event": event,
            "ring": f"out.{role}", "t_written": 1, "t_origin": 7, "action": {"chain": "arbitrum"}}


def test_executor_deduplicates_redelivered_opportunities():
    """No chain is configured here: each first delivery is refused with its reason, once."""
    ex = Executor(rt())
    ex.desk = Desk({}, Ledger(None, "r"))
    first = ex.handle([opportunity("a", "e1"), opportunity("a", "e1"), opportunity("b", "e1")])
    assert [d["key"] for d in first] == ["a|e1", "b|e1"]
    assert [(d["source"], d["event"], d["t_origin"]) for d in first] == [("a", "e1", 7), ("b", "e1", 7)]
    # the action is malformed (a bare chain): refused with the field named, never sent
    assert all(d["state"] == "refused" and "action.route" in d["reason"] for d in first)
    assert ex.handle([opportunity("a", "e1")]) == []          # redelivered after a restart
    (ack,) = ex.handle([{**opportunity("a", "e2", approved=False), "code": "stale"}])
    assert ack["state"] == "none" and "stale" in ack["reason"]
    assert ex.desk.counts["duplicates"] == 2 and ex.desk.counts["agent_refused"] == 1
