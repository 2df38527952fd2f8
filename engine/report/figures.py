"""The report's figures (matplotlib, Agg: no display), one function per figure.

Each returns a Figure, or None when the snapshot has nothing for it (the HTML then says so
instead of drawing empty axes).  `build(snap)` gives them all as (name, title, Figure).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")          # before pyplot: a report is built on servers without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .data import Snapshot, model_series  # noqa: E402


def _new(rows: int = 1, cols: int = 1, size=(9, 4)) -> tuple[Figure, list]:
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    return fig, [a for row in axes for a in row]


def latency(snap: Snapshot) -> Figure | None:
    panels = [("detection: node → ring (t_event − t_origin)", snap.detect_us),
              ("search (search_us)", snap.search_us), ("decision (decide_us)", snap.decide_us)]
    panels = [(t, d) for t, d in panels if any(d.values())]
    if not panels:
        return None
    fig, axes = _new(1, len(panels), (4.2 * len(panels), 3.6))
    for ax, (title, per_role) in zip(axes, panels):
        for role, xs in sorted(per_role.items()):
            if xs:
                ax.hist(xs, bins=min(40, max(5, len(xs))), histtype="step", linewidth=1.5,
                        label=f"{role} (n={len(xs)})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("µs")
        ax.set_ylabel("decisions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def profit(snap: Snapshot) -> Figure | None:
    """One panel per chain: each token's scale is its own (a chain's USDC and WETH profits
    differ by 10^12 in smallest units), so chains do not share an axis."""
    if not snap.profit:
        return None
    chains = sorted({c for c, _ in snap.profit})
    fig, axes = _new(1, len(chains), (4.5 * len(chains), 3.6))
    t0 = min(t for series in snap.profit.values() for t, _ in series)
    for ax, chain in zip(axes, chains):
        for (c, what), series in sorted(snap.profit.items()):
            if c != chain:
                continue
            xs, ys, total = [], [], 0
            for t, v in series:
                total += v
                xs.append((t - t0) / 60.0)
                ys.append(float(total))
            ax.step(xs, ys, where="post", marker="o", markersize=3, label=what)
        ax.set_title(f"{chain}: cumulative profit", fontsize=9)
        ax.set_xlabel("minutes since the first outcome")
        ax.set_ylabel("smallest unit of the token")
        ax.legend(fontsize=7, title="landed: realised, paper: simulated", title_fontsize=6)
    fig.tight_layout()
    return fig


def efficiency(snap: Snapshot) -> Figure | None:
    rows = [(f"{role} / {task}", float(s.get("completion_rate") or 0.0), int(s.get("runs") or 0))
            for role, tasks in sorted(snap.tasks.items()) for task, s in sorted(tasks.items())
            if s.get("runs")]
    if not rows:
        return None
    fig, axes = _new(1, 2, (12, max(3.5, 0.22 * len(rows) + 1)))
    ax = axes[0]
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:green")
    ax.set_xlim(0, 1.05)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title("task efficiency: runs completed / runs started (newest checkpoint)", fontsize=9)
    ax.set_xlabel("completion rate")
    ax = axes[1]
    if snap.busy_share:
        t0 = min(t for s in snap.busy_share.values() for t, _ in s)
        for role, series in sorted(snap.busy_share.items()):
            ax.plot([(t - t0) / 60 for t, _ in series], [100 * v for _, v in series], marker=".",
                    label=role)
        ax.legend(fontsize=6)
    ax.set_title("background work: busy share of wall time between checkpoints", fontsize=9)
    ax.set_xlabel("minutes")
    ax.set_ylabel("% of one core")
    fig.tight_layout()
    return fig


def _stacked(ax, per_role: dict, title: str) -> None:
    roles = sorted(per_role)
    kinds = sorted({k for c in per_role.values() for k in c})
    bottom = [0] * len(roles)
    for k in kinds:
        vals = [per_role[r].get(k, 0) for r in roles]
        ax.bar(roles, vals, bottom=bottom, label=k)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.legend(fontsize=6)


def discoveries(snap: Snapshot) -> Figure | None:
    if not any(snap.discoveries.values()) and not any(snap.decisions.values()):
        return None
    fig, axes = _new(1, 2, (12, 4))
    if any(snap.discoveries.values()):
        _stacked(axes[0], snap.discoveries, "discoveries per role (by kind)")
    else:
        axes[0].set_title("no discoveries in this snapshot", fontsize=9)
    if any(snap.decisions.values()):
        _stacked(axes[1], snap.decisions, "decisions per role (approved, or the refusal code)")
    else:
        axes[1].set_title("no decisions in this snapshot", fontsize=9)
    fig.tight_layout()
    return fig


def track_record(snap: Snapshot) -> Figure | None:
    """The learned model's numbers when there is one; the agents' predictions beside the
    realised profit of every landed trade either way (when there are any)."""
    series = {f"{p}: {k}": v for p, recs in snap.models.items()
              for k, v in model_series(recs).items()}
    if not series and not snap.predicted_realised:
        return None
    fig, axes = _new(1, 2 if series and snap.predicted_realised else 1, (11, 4))
    i = 0
    if series:
        ax = axes[i]
        i += 1
        for name, ys in list(sorted(series.items()))[:6]:
            ax.plot(range(1, len(ys) + 1), ys, marker=".", label=name)
        ax.set_title("the model's records (numeric fields, in order)", fontsize=9)
        ax.set_xlabel("record")
        ax.legend(fontsize=6)
    if snap.predicted_realised:
        ax = axes[i]
        by_chain: dict[str, list] = {}
        for pred, real, chain in snap.predicted_realised:
            by_chain.setdefault(chain, []).append((pred, real))
        for chain, pts in sorted(by_chain.items()):
            ax.scatter([p for p, _ in pts], [r for _, r in pts], label=chain, s=14)
        lo = min(min(p, r) for p, r, _ in snap.predicted_realised)
        hi = max(max(p, r) for p, r, _ in snap.predicted_realised)
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, label="realised = predicted")
        if lo > 0:            # profits span decades (tokens of 6 and 18 decimals)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title("landed trades: predicted vs realised profit", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("realised")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


FIGURES = (("latency", "Latency histograms", latency),
           ("profit", "Profit over time per chain", profit),
           ("efficiency", "Task efficiency", efficiency),
           ("discoveries", "Discoveries and decisions per role", discoveries),
           ("track-record", "The model's track record", track_record))


def build(snap: Snapshot) -> list[tuple[str, str, Figure | None]]:
    return [(name, title, fn(snap)) for name, title, fn in FIGURES]


def close(figs) -> None:
    for _, _, f in figs:
        if f is not None:
            plt.close(f)
