"""What a role is: `RoleKind`, the base of every role kind in roles/ (its declared options and
tasks, how it handles and decodes ring records), and how engine.toml's dotted path finds one.

The engine core never imports roles/: the supervisor builds a kind from the dotted path
engine.toml gives (`resolve_kind`), and the configuration check reads what a kind declares as
data (`describe_kind` -> `engine.config.KindSpec`).
"""
from __future__ import annotations

import importlib
import select
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import KindSpec
from . import frame
from .signals import drain
from .tasks import Priority, Task

if TYPE_CHECKING:  # pragma: no cover
    from .role import RoleRuntime


@dataclass(frozen=True)
class InfoMetric:
    """A number in a role's status info (`RoleRuntime.set_info`) that `/metrics` exposes
    (engine/core/metrics.py): `syndicate_<name>` with the labels `role` and `labels`.

    path: dotted keys into the info document; each `*` takes every key of the table at that
          level and gives its value to the next name of `labels` (`chains.*.events`, ("chain",))
    type: "counter" (only grows while the role lives; `_total` is added) or "gauge"

        METRICS = (InfoMetric("chain_events", "counter", "pool events published",
                              "chains.*.events", ("chain",)),)
    """
    name: str
    type: str
    doc: str
    path: str
    labels: tuple[str, ...] = ()

    def __post_init__(self):
        if self.type not in ("counter", "gauge"):
            raise ValueError(f"InfoMetric {self.name}: type must be counter or gauge")
        if self.path.split(".").count("*") != len(self.labels):
            raise ValueError(f"InfoMetric {self.name}: one label per '*' in {self.path!r}")


class RoleKind:
    """What a role is: its background tasks and how it handles events.  Subclass in roles/.

    A kind declares what engine.toml may say about it; `syndicate run`, `--check` and a reload
    refuse anything else (exit 2, naming the key and its line):

        class Watcher(RoleKind):
            OPTIONS = {"rate": (float, 2.0, "polls per second"),     # roles.<name>.options
                       "url": (str, None, "endpoint (None: not set)")}
            TASKS = {"poll": PollTask}          # roles.<name>.tasks.<task>: what it may run
            source = True                       # it writes events.<chain> rings

    OPTIONS maps each option to (type, default, one-line doc); `float` accepts an integer.
    `self.options` is the defaults overlaid with the configured values, so the default lives
    in one place.  TASKS maps each task name the kind may create to its Task class, whose own
    OPTIONS declare `roles.<name>.tasks.<task>.options` the same way.  A subclass extends its
    base's: `OPTIONS = {**Agent.OPTIONS, "dedup_window": (int, 100_000, "...")}`.  A kind that
    declares nothing takes no options and no task configuration.
    """

    #: roles.<name>.options: name -> (type, default, doc)
    OPTIONS: dict[str, tuple] = {}
    #: the tasks it may run: task name -> Task class (the class declares the task's options)
    TASKS: dict[str, type[Task]] = {}
    #: True for event sources: they write their chains' `events.<chain>` rings (so they need
    #: `chains`), read no ring and have no outbox
    source = False
    #: True for event sources (monitors): they run at the monitor FIFO priority and mostly sleep.
    realtime = False
    #: The numbers of its status info that `/metrics` exposes (InfoMetric), read by the
    #: supervisor's collector: a role writes no metric of its own.
    METRICS: tuple[InfoMetric, ...] = ()

    def __init__(self, rt: "RoleRuntime"):
        self.rt = rt
        self.name = rt.name
        self.config = rt.config
        self.options = {**{k: d[1] for k, d in self.OPTIONS.items()}, **rt.config.options}
        self.log = rt.log

    @classmethod
    def spec(cls) -> KindSpec:
        """The declarations, as data for the configuration check (engine/config.py)."""
        return KindSpec(options=dict(cls.OPTIONS), source=bool(cls.source),
                        tasks={n: dict(t.OPTIONS) for n, t in cls.TASKS.items()})

    #: The binary ring records this kind reads, {tag: decoder} (engine/core/frame.py).
    decoders: dict = {}

    @classmethod
    def decode(cls, raw) -> dict:
        """A ring record as a dict (JSON, or by its tag's decoder); ValueError if unreadable."""
        return frame.decode(raw, cls.decoders, cls.__name__)

    def tasks(self) -> list[Task]:
        return []

    def handle(self, events: list[dict]) -> list[dict]:
        """Analyse events (decoded ring records, each with its `ring` name); return decision
        records for the role's outbox.  Runs boosted: keep it short."""
        return []

    def hold(self) -> tuple[int, float] | None:
        """After a switch, before the role lowers itself: (fd, seconds) to wait, boosted and
        off the GIL, until fd is readable or the seconds pass; None (the default) to lower at
        once.  For a kind whose own thread carries on what the switch handed it (the
        executor's sending thread): see `hold_for_kind`."""
        return None

    def on_lost(self, ring: str, n: int) -> None:
        self.log.warning("fell a lap behind: records lost", ring=ring, lost=n)

    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass


def hold_for_kind(kind: RoleKind | None, wake_fd: int, pending) -> int:
    """Wait as RoleKind.hold asks, in the role's main thread, still boosted; the ns it took.

    Why: lowered to the background class straight after a switch, the main thread runs its
    tasks at nice 10 holding the GIL, and on a loaded machine it is descheduled while it holds
    it; a boosted thread of the kind (the executor's sender, back from a socket) then waits for
    the GIL until this thread gets a CPU again: a priority inversion, 2-5 ms at p99 (bench e2e,
    DEVELOPING.md).  Waiting here in select() holds neither a CPU nor the GIL.  An interrupt or
    an operator's signal ends the wait at once (the wake-up pipe: `pending()` is looked at
    after the pipe is emptied, so a signal is never missed)."""
    hold = kind.hold() if kind is not None else None
    if hold is None:
        return 0
    fd, limit = hold
    t0 = time.monotonic_ns()
    drain(wake_fd)
    if not pending():
        try:
            select.select([wake_fd, fd], [], [], max(0.0, limit))
        except (OSError, ValueError):
            pass
    return time.monotonic_ns() - t0


def resolve_kind(path: str) -> type[RoleKind]:
    """'package.module:Class' -> the class, checked.  Raises ImportError/TypeError with the path."""
    module, _, cls = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        raise ImportError(f"kind {path!r}: no module {e.name!r}") from e
    except AttributeError:
        raise ImportError(f"kind {path!r}: module {module!r} has no {cls!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, RoleKind)):
        raise TypeError(f"kind {path!r} is not a RoleKind subclass")
    return obj


def describe_kind(path: str) -> KindSpec:
    """What the kind at `path` declares (for `engine.config.load(describe=...)`)."""
    return resolve_kind(path).spec()


def configure_tasks(tasks: list[Task], configured: dict, log,
                    switched_on: frozenset[str] | set[str] = frozenset()) -> list[Task]:
    """A kind's tasks with engine.toml's `roles.<name>.tasks.<task>` applied (enabled,
    interval, priority, options); a configured task the role does not run is logged.  An
    `optional` task runs only if configured for the role or named in `switched_on` (the
    engine-wide switches, `[tasks] checksum`)."""
    out = []
    known = {t.name for t in tasks}
    for name in configured:
        if name not in known:
            log.warning("engine.toml configures a task this role does not run (ignored)",
                        task=name, running=",".join(sorted(known)))
    for t in tasks:
        tc = configured.get(t.name)
        if t.optional and not tc and t.name not in switched_on:
            continue
        if tc:
            if not tc["enabled"]:
                continue
            if tc["interval"] is not None:
                t.interval = float(tc["interval"])
            if tc["priority"] is not None:
                t.priority = Priority.parse(tc["priority"])
            t.options.update(tc["options"])
        out.append(t)
    return out
