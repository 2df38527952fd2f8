"""Role kinds in isolation: the executor acts on each (role, event) once, whatever the delivery,
and only on approved opportunities."""
from __future__ import annotations

from types import SimpleNamespace

from roles.agents import Executor


def rt(**options):
    return SimpleNamespace(name="r", config=SimpleNamespace(options=options, chains=[]), log=None)


def opportunity(role, event, approved=True):
    return {"kind": "opportunity", "approved": approved, "role": role, "event": event,
            "ring": f"out.{role}", "t_written": 1, "action": {"chain": "arbitrum"}}


def test_executor_deduplicates_redelivered_opportunities():
    ex = Executor(rt())
    first = ex.handle([opportunity("a", "e1"), opportunity("a", "e1"), opportunity("b", "e1")])
    assert [(d["source"], d["event"]) for d in first] == [("a", "e1"), ("b", "e1")]
    assert ex.handle([opportunity("a", "e1")]) == []          # redelivered after a restart
    (refused,) = ex.handle([{**opportunity("a", "e2", approved=False), "code": "stale"}])
    assert refused["action"] == "none" and "stale" in refused["why"]
    assert all(d["mode"] == "paper" for d in first)
    # the action is malformed (a bare chain): refused with the field named, never sent
    assert all(d["action"] == "refused" and "action.route" in d["why"] for d in first)
