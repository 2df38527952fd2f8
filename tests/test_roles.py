"""Role kinds in isolation: the executor acts on each (role, event) once, whatever the delivery."""
from __future__ import annotations

from types import SimpleNamespace

from roles.agents import Agent, Executor


def rt(**options):
    return SimpleNamespace(name="r", config=SimpleNamespace(options=options), log=None)


def assessment(role, event, verdict="candidate"):
    return {"kind": "assessment", "verdict": verdict, "role": role, "event": event,
            "ring": f"out.{role}", "t_written": 1}


def test_executor_deduplicates_redelivered_assessments():
    ex = Executor(rt())
    first = ex.handle([assessment("a", "e1"), assessment("a", "e1"), assessment("b", "e1")])
    assert [(d["source"], d["event"]) for d in first] == [("a", "e1"), ("b", "e1")]
    assert ex.handle([assessment("a", "e1")]) == []          # redelivered after a restart
    assert ex.handle([assessment("a", "e2", verdict="ignore")]) == []
    assert all(d["mode"] == "paper" for d in first)


def test_agent_assessment_is_labelled_placeholder():
    ag = Agent(rt(impact_threshold_bps=50))
    out = ag.handle([{"ring": "events.base", "id": "x", "chain": "base", "impact_bps": 75,
                      "t_written": 5},
                     {"ring": "events.base", "id": "y", "chain": "base", "impact_bps": 10,
                      "t_written": 6}])
    assert [d["verdict"] for d in out] == ["candidate", "ignore"]
    assert all(d["analysis"] == "placeholder" for d in out)
