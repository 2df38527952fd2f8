"""plan_reload (engine/core/reload.py): what a SIGHUP does, decided from two configurations
alone, without a process or a file."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from engine import config
from engine.core.reload import plan_reload

SOURCES = {"mon"}
BASE = {
    "engine": {"name": "plan"},
    "roles": {
        "mon": {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"]},
        "a": {"kind": "roles.agents:Agent", "chains": ["arbitrum"]},
        "b": {"kind": "roles.agents:Agent", "chains": ["base"]},
        "exec": {"kind": "roles.agents:Executor", "subscribe": False, "inbox": "interrupt"},
    },
}


def cfg(edit=None):
    doc = copy.deepcopy(BASE)
    if edit:
        edit(doc)
    return config.from_dict(doc, path=Path("/nonexistent/engine.toml"))


def plan(edit, **kw):
    return plan_reload(cfg(), cfg(edit), sources=SOURCES, **kw)


def test_nothing_changed_nothing_to_do():
    p = plan(None)
    assert (p.changed, p.added, p.removed, p.fixed, p.refused) == (set(), set(), set(), [], "")


def test_a_changed_role_restarts_alone():
    p = plan(lambda d: d["roles"]["b"].update(options={"rpc": "http://127.0.0.1:1"}))
    assert p.changed == {"b"} and not p.added and not p.removed
    assert p.config.roles["b"].options == {"rpc": "http://127.0.0.1:1"}


def test_added_role_restarts_the_writers_whose_readers_changed():
    # c reads events.arbitrum (mon must interrupt it too) and writes out.c, which the
    # executor reads on interrupt (its inputs change)
    p = plan(lambda d: d["roles"].update(c={"kind": "roles.agents:Agent", "chains": ["arbitrum"]}))
    assert p.added == {"c"} and p.changed == {"mon", "exec"}


def test_removed_role():
    p = plan(lambda d: d["roles"].pop("b"))
    assert p.removed == {"b"} and p.changed == {"exec"}     # out.b is gone from its inputs


def test_sections_that_need_a_restart_are_kept_and_named():
    p = plan(lambda d: d.update(rings={"slot_size": 2048}))  # not the default
    assert p.fixed == ["rings"] and p.config.rings == cfg().rings and not p.changed


def test_a_moved_manifest_restarts_every_kept_role():
    old, new = cfg(), dataclasses.replace(cfg(), manifest={"chains": {}})
    p = plan_reload(old, new, sources=SOURCES)
    assert p.changed == {"mon", "a", "b", "exec"}


def test_more_roles_than_slots_in_the_engine_life_is_refused():
    p = plan(lambda d: d["roles"].update(c={"kind": "roles.agents:Agent"}),
             lifetime_roles={"mon", "a", "b", "exec", "gone"}, max_roles=5)
    assert "more than 5 roles" in p.refused and not p.added
