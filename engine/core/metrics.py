"""`/metrics`: the engine as Prometheus sees it, collected at each scrape from what the
supervisor already has; no role writes a metric.

    control block (/syn.<engine>.control) ──► per role: counters, gauges, the per-phase
                                              latency histograms (seconds, cumulative buckets)
    run_dir/roles/<role>.info.json ─────────► the numbers its kind declares (RoleKind.METRICS,
    (RoleRuntime.set_info)                    an InfoMetric each: path, type, labels)
                       └──► Collector.collect() ──► Exposition.render(accept) ──► text format
                                                    (engine/core/metrics_http.py serves it)

Every series carries `role` (the engine.toml role name).  The core's names are generic
(`syndicate_events_total`, `syndicate_switch_seconds`); what a role kind knows of chains or
trades appears only through its own declaration, so this module knows no chain.

Histograms: the control block keeps 4 log-scale buckets per octave in nanoseconds
(engine/core/control.py) and the exact sum of each histogram.  A Prometheus bucket `le`
is a bucket edge of the control block (`buckets_per_octave` of them per octave, from
1.024 µs to 2.1-3.8 s), so the cumulative counts are exact, not interpolated: `le` counts
the observations below that edge (integer nanoseconds: at most 1 ns from "less or equal").
A role's histogram appears once it has an observation.  A scrape's cost is prometheus_client's
text encoding, ~20 µs a sample line: 8 roles with every phase observed, 2 edges per octave,
about 3 000 lines, 60 ms of the supervisor's loop (a quiet machine).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from .control import BUCKETS, ControlBlock, F, Flag, H, State, bucket_low
from .status import _alive, read_info

# control-block field -> (name without `_total`, help): counters, per role
COUNTERS = (
    (F.EVENTS, "events", "Ring records the role handled"),
    (F.SWITCHES, "switches", "Atomic switches (interrupt seen, background paused, state saved, "
                             "events handled)"),
    (F.INTERRUPTS, "interrupts", "Interrupt signals the role saw"),
    (F.COALESCED, "interrupts_coalesced", "Interrupts that found their events already handled"),
    (F.EVENTS_LOST, "events_lost", "Ring records lost by falling a lap behind"),
    (F.DECISIONS, "decisions", "Decision records the role wrote to its outbox"),
    (F.DECISIONS_DROPPED, "decisions_dropped", "Decisions too large for the outbox's slots"),
    (F.CHECKPOINTS, "checkpoints", "Task-state checkpoints saved"),
    (F.LATE_SAVES, "late_saves", "Switch-path saves that missed their budget"),
    (F.CHECKPOINT_ERRORS, "checkpoint_errors", "Checkpoints that failed"),
    (F.SWITCHES_BROKEN, "switches_broken", "Switches the role died in (saving or handling)"),
    (F.RESTORE_SAVED, "restore_saved", "Task states in the checkpoints the role's starts found"),
    (F.RESTORE_DONE, "restore_done", "Task states restored at the role's starts"),
    (F.DISCOVERIES, "discoveries", "Discoveries the role recorded"),
    (F.SLICES, "background_slices", "Background task slices run"),
    (F.OVERRUNS, "slice_overruns", "Background steps that ran past the slice budget"),
    (F.TASK_RUNS, "task_runs", "Background task runs started"),
    (F.TASK_DONE, "task_runs_completed", "Background task runs completed"),
    (F.TASK_ERRORS, "task_errors", "Background task runs that failed"),
    (F.MISSED_INTERVALS, "task_missed_intervals", "Task intervals missed (a run came late)"),
    (F.SHED, "load_sheds", "Times the role started shedding load (memory or operator)"),
    (F.RESTARTS, "restarts", "Times the supervisor restarted the role"),
    (F.WATCHDOG_ACTIONS, "watchdog_actions", "Watchdog actions against the role (abort, kill, "
                                             "shed)"),
)
SECONDS = (   # nanosecond counters, exposed in seconds
    (F.BUSY_NS, "task_busy_seconds", "Time spent in background task work"),
    (F.DUE_NS, "task_due_seconds", "Time during which some background task was due "
                                   "(efficiency = busy / due)"),
)
PHASES = {
    H.SIGNAL: "interrupt sent -> signal seen by the role",
    H.PAUSE: "signal seen -> background work paused (the safe point)",
    H.SAVE: "background paused -> task state saved",
    H.SWITCH: "interrupt sent -> handling started (the switch time)",
    H.DECIDE: "handling started -> decision written",
    H.EVENT: "event written to its ring -> decision written",
    H.RESUME: "decision written -> background work resumed",
    H.DETECT: "a source's input received -> its record in the ring (a monitor: log bytes -> pool record)",
    H.SLICE: "one background slice",
}
FIRST_EDGE = 40        # control-block bucket 40 starts at 2**10 ns = 1.024 µs


def bucket_edges(per_octave: int) -> list[int]:
    """Control-block bucket indexes whose lower edge becomes an `le` (1, 2 or 4 per octave).
    Bucket BUCKETS-1 takes everything above it, so its edge is the last finite one."""
    step = 4 // per_octave
    return list(range(FIRST_EDGE, BUCKETS, step))


def cumulative(counts: list[int], edges: list[int]) -> list[tuple[str, int]]:
    """Prometheus buckets [(le in seconds, count of observations below it)..., ("+Inf", n)]."""
    out, run, b = [], 0, 0
    for e in edges:
        run += sum(counts[b:e])
        b = e
        out.append((floatToGoString(bucket_low(e) / 1e9), run))
    out.append(("+Inf", run + sum(counts[b:])))
    return out


def info_values(doc, path: str) -> list[tuple[tuple[str, ...], float]]:
    """(label values, number) for each number at `path` in an info document ('*': every key)."""
    parts, out = path.split("."), []

    def walk(node, i: int, labels: tuple[str, ...]) -> None:
        if i == len(parts):
            if isinstance(node, (int, float)):    # bool is an int: a flag reads 0 or 1
                out.append((labels, float(node)))
            elif isinstance(node, str) and node.isdigit():   # a uint256 kept as a string
                out.append((labels, float(int(node))))
        elif isinstance(node, dict):
            if parts[i] == "*":
                for k, v in node.items():
                    walk(v, i + 1, (*labels, str(k)))
            elif parts[i] in node:
                walk(node[parts[i]], i + 1, labels)
    walk(doc, 0, ())
    return out


class Collector:
    """A prometheus_client custom collector over the control block and the info files.
    `kinds()`: role name -> its kind class (the supervisor's, current after a reload)."""

    def __init__(self, control: ControlBlock, *, engine: str, run_dir, per_octave: int = 2,
                 kinds: Callable[[], dict] = dict, warn: Callable[[str], None] = lambda m: None):
        self.cb, self.engine, self.run_dir = control, engine, run_dir
        self.edges = bucket_edges(per_octave)
        self.kinds, self.warn = kinds, warn
        self._warned: set[str] = set()

    def collect(self) -> Iterable:
        views = [v for v in (self.cb.slot(i).snapshot() for i in range(self.cb.slots)) if v.name]
        yield from self._engine()
        yield from self._roles(views)
        yield from self._histograms(views)
        yield from self._declared(views)

    def _engine(self):
        g = GaugeMetricFamily("syndicate_engine_start_time_seconds", "When the engine started "
                              "(Unix time)", labels=["engine"])
        g.add_metric([self.engine], self.cb.created_ns / 1e9)
        yield g
        mean_ns, max_ns = self.cb.watchdog_cost_ns
        w = GaugeMetricFamily("syndicate_watchdog_pass_seconds", "CPU time of one watchdog pass "
                              "over every role", labels=["stat"])
        w.add_metric(["mean"], mean_ns / 1e9)
        w.add_metric(["max"], max_ns / 1e9)
        yield w

    def _roles(self, views):
        fams = [CounterMetricFamily(f"syndicate_{n}", doc, labels=["role"]) for _, n, doc in COUNTERS]
        secs = [CounterMetricFamily(f"syndicate_{n}", doc, labels=["role"]) for _, n, doc in SECONDS]
        gauge = lambda n, doc, *extra: GaugeMetricFamily(f"syndicate_role_{n}", doc,  # noqa: E731
                                                         labels=["role", *extra])
        up = gauge("up", "1 while the role's process runs")
        state = gauge("state", "1 for the role's current state", "state")
        mem = gauge("private_memory_bytes", "Private (anonymous) memory, as the watchdog measures")
        cpu = gauge("cpu_ratio", "CPU use over the last watchdog interval, in cores")
        hb = gauge("heartbeat_age_seconds", "Time since the role's loop last turned")
        start = gauge("start_time_seconds", "When this incarnation started (Unix time)")
        flags = gauge("flag", "1 while the flag is set: paused, shedding, boost", "flag")
        exit_ = gauge("last_exit_code", "Last exit status (1000 + signal number if killed)")
        now_mono = time.monotonic_ns()
        for v in views:
            r = [v.name]
            for fam, (f, _, _) in zip(fams, COUNTERS):
                fam.add_metric(r, v[f])
            for fam, (f, _, _) in zip(secs, SECONDS):
                fam.add_metric(r, v[f] / 1e9)
            up.add_metric(r, 1.0 if _alive(v[F.PID]) else 0.0)
            for s in State:
                state.add_metric([v.name, s.name.lower()], 1.0 if v.state is s else 0.0)
            mem.add_metric(r, v[F.MEM_PRIVATE])
            cpu.add_metric(r, v[F.CPU_PERMILLE] / 1000.0)
            if v[F.HEARTBEAT_NS] and v[F.HEARTBEAT_NS] <= now_mono:
                hb.add_metric(r, (now_mono - v[F.HEARTBEAT_NS]) / 1e9)
            if v[F.STARTED_NS]:
                start.add_metric(r, v[F.STARTED_NS] / 1e9)
            for name, on in (("paused", v[F.FLAGS] & Flag.PAUSED),
                             ("shedding", v[F.FLAGS] & Flag.SHEDDING), ("boost", v[F.BOOST])):
                flags.add_metric([v.name, name], 1.0 if on else 0.0)
            exit_.add_metric(r, v[F.LAST_EXIT])
        yield from fams
        yield from secs
        yield from (up, state, mem, cpu, hb, start, flags, exit_)

    def _histograms(self, views):
        for h, doc in PHASES.items():
            fam = HistogramMetricFamily(f"syndicate_{h.name.lower()}_seconds", f"Latency: {doc}",
                                        labels=["role"])
            for v in views:
                counts = v.hists[h.name.lower()]
                if not any(counts):   # a phase this role never goes through (a monitor's
                    continue          # save): no series, not 46 lines of zeros per scrape
                fam.add_metric([v.name], cumulative(counts, self.edges),
                               sum_value=v[F.HIST_SUM_NS + h] / 1e9)
            yield fam

    def _declared(self, views):
        """The info files' numbers, by each role kind's METRICS; one family per name."""
        kinds = self.kinds()
        fams: dict[str, tuple] = {}
        for v in views:
            decl = getattr(kinds.get(v.name), "METRICS", ())
            doc = read_info(self.run_dir, v.name) if decl else None
            for m in decl:
                key = (m.type, tuple(m.labels))
                fam = fams.get(m.name)
                if fam is None:
                    cls = CounterMetricFamily if m.type == "counter" else GaugeMetricFamily
                    fam = fams[m.name] = (key, cls(f"syndicate_{m.name}", m.doc,
                                                   labels=["role", *m.labels]))
                elif fam[0] != key:   # two kinds declare one name differently: keep the first
                    if m.name not in self._warned:
                        self._warned.add(m.name)
                        self.warn(f"metric syndicate_{m.name}: declared as {fam[0]} and {key} "
                                  f"(kind of role {v.name}); the second is left out")
                    continue
                for labels, value in info_values(doc, m.path) if doc else ():
                    fam[1].add_metric([v.name, *labels], value)
        for _, fam in fams.values():
            yield fam


class Exposition:
    """The registry `/metrics` renders: the collector above, nothing process-global."""

    def __init__(self, collector: Collector):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) in the format the scraper asks for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def start(cfg, control: ControlBlock, *, kinds: Callable[[], dict], log):
    """The supervisor's `/metrics` server for `cfg` ([metrics] listen), or NO_SERVER when off.
    An address that cannot be bound is a ConfigError naming metrics.listen (exit 2)."""
    from .. import config as config_mod
    from .metrics_http import NO_SERVER, MetricsServer
    m = cfg.metrics
    if not m["listen"]:
        return NO_SERVER
    collector = Collector(control, engine=cfg.name, run_dir=cfg.run_dir,
                          per_octave=m["buckets_per_octave"], kinds=kinds, warn=log.warning)
    try:
        server = MetricsServer(m["listen"], Exposition(collector).render,
                               on_error=lambda msg: log.error(msg))
    except (OSError, ValueError) as e:
        raise config_mod.error_at(cfg, "metrics", "listen", f"cannot listen on {m['listen']}: "
                                  f"{getattr(e, 'strerror', None) or e}")
    log.info("metrics served", url=f"http://{m['listen']}/metrics")
    return server
