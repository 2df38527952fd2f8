"""Wiring: which shared-memory segments an engine has, who reads and writes which ring.

    /syn.<engine>.control      the control block (status, histograms, one slot per role)
    /syn.<engine>.staging      the switch's task-state staging pages
    /syn.<engine>.events.<c>   events of chain <c>, written by its source role
    /syn.<engine>.out.<role>   a role's decisions
    /syn.<engine>.lock         the machine-wide owner lock (a file, flock; engine/core/owner.py)

Every segment name is made here (`segment_name`), so listing and removing what an engine left
behind (`leftover_segments`, `remove_segments`) cannot miss one.  `plan_rings` derives the rings
from engine.toml; `Wiring` carries the result, built by the supervisor and inherited by every
role across fork.  This module is what the supervisor and role processes share: neither
imports the other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - annotations only: these modules import this one
    from .control import ControlBlock
    from .ring import Ring
    from .staging import Staging

MAX_ROLES = 32          # control-block and staging slots, ring reader lines
SEGMENT_PREFIX = "/syn."
SHM_DIR = "/dev/shm"


def segment_name(engine: str, what: str) -> str:
    """The posix_ipc name of one of `engine`'s segments: '/syn.<engine>.<what>'."""
    return f"{SEGMENT_PREFIX}{engine}.{what}"


def leftover_segments(engine: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Names (as in /dev/shm, without the leading '/') of `engine`'s segments that exist."""
    prefix = segment_name(engine, "")[1:]
    kept = {segment_name(engine, k)[1:] for k in keep}
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(prefix) and n not in kept)
    except FileNotFoundError:
        return []


def remove_segments(engine: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Unlink every segment of `engine` but those in `keep`; returns what was removed."""
    removed = []
    for n in leftover_segments(engine, keep):
        try:
            os.unlink(f"{SHM_DIR}/{n}")
            removed.append(n)
        except FileNotFoundError:
            pass
    return removed


def stop_engine(proc, engine: str, grace: float = 20.0) -> list[str]:
    """Stop a `syndicate run` child started in its own session (benchmarks, replay): SIGTERM,
    up to `grace` s for its graceful stop, then SIGKILL to the whole process group, and remove
    whatever segments of `engine` are left (only after a SIGKILL: a supervisor removes its own).
    Returns the segments removed."""
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return remove_segments(engine)


@dataclass
class Wiring:
    """Who reads and writes which ring; built from the config, inherited by every role.
    The segment types are named, not imported: control.py, ring.py and staging.py import
    this module for their names, and the floors allow no import cycle."""
    control: "ControlBlock"
    supervisor_pid: int
    slots: dict[str, int]
    rings: dict[str, "Ring"] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    emits: dict[str, list[str]] = field(default_factory=dict)
    subscribers: dict[str, list[str]] = field(default_factory=dict)
    role_boost_priority: int | None = None
    monitor_priority: int | None = None
    map_size: int = 1 << 30
    staging: "Staging | None" = None


def plan_rings(cfg, sources: set[str]) -> dict:
    """Ring names, readers, writers and interrupt targets for the enabled roles of `cfg` (an
    EngineConfig); `sources` names the roles whose kind is an event source.  A role's `reads`
    (role names) gives it those roles' outboxes as inputs that interrupt it, sources included;
    such an outbox goes to those readers only, not to every inbox role."""
    roles = [r for r in cfg.roles.values() if r.enabled]
    emits, inputs, outputs, subs = {}, {r.name: [] for r in roles}, {}, {}
    for r in roles:
        if r.name in sources:
            emits[r.name] = [f"events.{c}" for c in r.chains]
            for ring in emits[r.name]:
                subs.setdefault(ring, [])
        else:
            outputs[r.name] = f"out.{r.name}"
            subs.setdefault(outputs[r.name], [])
    direct = set()      # outboxes named in some role's `reads`: read by those roles only
    for r in roles:
        for other in getattr(r, "reads", ()):
            ring = outputs.get(other)
            if ring is not None and other != r.name and ring not in inputs[r.name]:
                inputs[r.name].append(ring)
                subs[ring].append(r.name)
                direct.add(ring)
    for r in roles:
        if r.name in sources:
            continue
        if r.subscribe:        # True, or "quiet": read without being interrupted
            for c in r.chains:
                ring = f"events.{c}"
                if ring in subs:
                    inputs[r.name].append(ring)
                    if r.subscribe is True:
                        subs[ring].append(r.name)
        if r.inbox != "none":
            for other, ring in outputs.items():
                if other != r.name and ring not in direct and ring not in inputs[r.name]:
                    inputs[r.name].append(ring)
                    if r.inbox == "interrupt":
                        subs[ring].append(r.name)
    return {"emits": emits, "inputs": inputs, "outputs": outputs, "subscribers": subs}
