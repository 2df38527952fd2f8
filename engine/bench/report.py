"""Shared reporting for benchmarks: percentiles, a result beside its baseline, text or JSON.

Every benchmark builds `Comparison`s (ours vs a baseline measured in the same run) and hands
them to `emit`, so all of them print the same columns and the same JSON shape:

    {"bench": "ring", "host": {...}, "results": [
        {"name": ..., "unit": "us", "ours": {"label", "n", "p50", "p99", "p99_9", "max", "mean"},
         "baseline": {...same...}, "ratio_p50": baseline/ours, "ratio_p99": ..., "notes": ...}]}

A ratio above 1 means ours is better (faster) for latencies; for throughputs (`higher_is_better`)
the ratio is ours/baseline, so above 1 still means ours is better.
"""
from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass, field

import orjson


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Summary:
    label: str
    n: int
    p50: float
    p99: float
    p99_9: float
    max: float
    mean: float

    @classmethod
    def of(cls, label: str, samples: list[float]) -> "Summary":
        s = sorted(samples)
        mean = sum(s) / len(s) if s else math.nan
        return cls(label, len(s), percentile(s, 50), percentile(s, 99), percentile(s, 99.9),
                   s[-1] if s else math.nan, mean)

    @classmethod
    def single(cls, label: str, value: float) -> "Summary":
        """A figure that is one number (a throughput), shown in every column."""
        return cls(label, 1, value, value, value, value, value)


@dataclass
class Comparison:
    name: str
    unit: str
    ours: Summary
    baseline: Summary | None = None
    higher_is_better: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def ratio(self, attr: str) -> float | None:
        if self.baseline is None:
            return None
        a, b = getattr(self.ours, attr), getattr(self.baseline, attr)
        if not a or not b or math.isnan(a) or math.isnan(b):
            return None
        return a / b if self.higher_is_better else b / a

    def as_dict(self) -> dict:
        return {
            "name": self.name, "unit": self.unit, "ours": vars(self.ours),
            "baseline": vars(self.baseline) if self.baseline else None,
            "higher_is_better": self.higher_is_better,
            "ratio_p50": self.ratio("p50"), "ratio_p99": self.ratio("p99"),
            "notes": self.notes, **({"extra": self.extra} if self.extra else {}),
        }


def host_info() -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "load1": os.getloadavg()[0]}


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if abs(v) >= 100_000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def render_text(bench: str, results: list[Comparison]) -> str:
    out = [f"syndicate bench {bench}   ({host_info()['cpus']} cpus, load {host_info()['load1']:.2f})"]
    head = f"  {'':<34}{'n':>8}{'p50':>11}{'p99':>11}{'p99.9':>11}{'max':>11}"
    for c in results:
        out.append("")
        out.append(f"{c.name}  [{c.unit}]" + (f"  — {c.notes}" if c.notes else ""))
        out.append(head)
        for s in (c.ours, c.baseline):
            if s is None:
                continue
            out.append(f"  {s.label:<34}{s.n:>8}{_fmt(s.p50):>11}{_fmt(s.p99):>11}"
                       f"{_fmt(s.p99_9):>11}{_fmt(s.max):>11}")
        if c.baseline is not None:
            r50, r99 = c.ratio("p50"), c.ratio("p99")
            better = "higher" if c.higher_is_better else "lower"
            out.append(f"  ratio (baseline/ours, {better} is better → >1 means ours wins): "
                       f"p50 {_fmt(r50) if r50 else '-'}×  p99 {_fmt(r99) if r99 else '-'}×")
    return "\n".join(out)


def emit(bench: str, results: list[Comparison], as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        doc = {"bench": bench, "host": host_info(), "results": [c.as_dict() for c in results]}
        if extra:
            doc.update(extra)
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render_text(bench, results))
        for k, v in (extra or {}).items():
            print(f"{k}: {v}")
