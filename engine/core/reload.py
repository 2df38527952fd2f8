"""Reload planning (SIGHUP), decided without side effects, beside the restart policy.

    old config ─┐                 ┌─► config   the new one, with the sections that need a
    new config ─┼─► plan_reload ──┤             full restart kept from the old (`fixed`)
    sources ────┘                 ├─► changed  roles to restart: their configuration changed,
                                  │             the manifest moved (every role may use its
                                  │             endpoints), their input rings changed, or the
                                  │             roles they interrupt changed (they write the ring)
                                  ├─► added / removed
                                  └─► refused  why nothing is applied ("" if it is)

The supervisor loads the file (I/O), asks for the plan, then carries it out: removed roles
retire, changed roles restart with the new configuration, added roles start.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .wiring import MAX_ROLES, plan_rings

RESTART_ONLY = ("engine", "rings", "switch", "store", "metrics", "devnet")   # a reload cannot change these


@dataclass
class ReloadPlan:
    config: object                       # the EngineConfig to run with
    fixed: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    refused: str = ""


def plan_reload(old, new, *, sources: set[str], lifetime_roles: set[str] = frozenset(),
                max_roles: int = MAX_ROLES) -> ReloadPlan:
    """What a reload from `old` to `new` (EngineConfigs) does.  `sources`: the roles whose kind
    is an event source; `lifetime_roles`: every role this engine has given a control-block slot
    (a slot is never reused while the engine runs)."""
    fixed = [s for s in RESTART_ONLY if getattr(new, s) != getattr(old, s)]
    if fixed:
        new = dataclasses.replace(new, **{s: getattr(old, s) for s in fixed})
    old_roles = {n: r for n, r in old.roles.items() if r.enabled}
    new_roles = {n: r for n, r in new.roles.items() if r.enabled}
    if len(set(lifetime_roles) | set(new_roles)) > max_roles:
        return ReloadPlan(old, fixed, refused=(
            f"more than {max_roles} roles in this engine's life (a control-block slot each); "
            "restart the engine to use the new set"))
    kept = set(new_roles) & set(old_roles)
    changed = {n for n in kept if new_roles[n] != old_roles[n]}
    if new.manifest != old.manifest:
        changed |= kept
    before, after = plan_rings(old, sources), plan_rings(new, sources)
    changed |= {n for n in kept if before["inputs"].get(n) != after["inputs"].get(n)}
    for ring, subs in after["subscribers"].items():
        if before["subscribers"].get(ring) != subs:
            writers = [n for n, rings in after["emits"].items() if ring in rings] + \
                      [n for n, out in after["outputs"].items() if out == ring]
            changed.update(w for w in writers if w in kept)
    return ReloadPlan(new, fixed, changed, set(new_roles) - set(old_roles),
                      set(old_roles) - set(new_roles))
