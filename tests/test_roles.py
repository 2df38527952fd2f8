"""Role kinds in isolation: the executor acts on each (role, event) once, whatever the delivery;
the placeholder agent labels what it is."""
from __future__ import annotations

from types import SimpleNamespace

from engine.chain.desk import Desk
from engine.chain.outcomes import Ledger
from roles.agents import Agent, Executor


def rt(**options):
    return SimpleNamespace(name="r", config=SimpleNamespace(options=options, chains=()), log=None)


def opportunity(role, event, approved=True):
    return {"kind": "opportunity", "approved": approved, "role": role, "event": event,
            "chain": "arbitrum", "action": {"chain": "arbitrum"}, "ring": f"out.{role}",
            "t_written": 1}


def test_executor_deduplicates_redelivered_opportunities():
    """No chain is configured here: each first delivery is refused with its reason, once."""
    ex = Executor(rt())
    ex.desk = Desk({}, Ledger(None, "r"))
    first = ex.handle([opportunity("a", "e1"), opportunity("a", "e1"), opportunity("b", "e1")])
    assert [d["key"] for d in first] == ["a|e1", "b|e1"]
    assert all(d["state"] == "refused" and d["reason"].startswith("bad action") for d in first)
    assert ex.handle([opportunity("a", "e1")]) == []          # redelivered after a restart
    assert ex.handle([opportunity("a", "e2", approved=False)]) == []   # refusals are not for us
    assert ex.desk.counts["duplicates"] == 2


def test_agent_assessment_is_labelled_placeholder():
    ag = Agent(rt(impact_threshold_bps=50))
    out = ag.handle([{"ring": "events.base", "id": "x", "chain": "base", "impact_bps": 75,
                      "t_written": 5},
                     {"ring": "events.base", "id": "y", "chain": "base", "impact_bps": 10,
                      "t_written": 6}])
    assert [d["verdict"] for d in out] == ["candidate", "ignore"]
    assert all(d["analysis"] == "placeholder" for d in out)
