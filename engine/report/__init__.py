"""`syndicate report SNAPSHOT -o report.html [--png DIR]`: an offline report of an LMDB snapshot.

    SNAPSHOT (a store dir: var/lmdb/<name>, or a `snapshot copy` backup; engine running or not)
      ─► data.load: one read transaction (opportunities, outcomes, tasks, discoveries, models)
      ─► figures.build: latency histograms, profit over time per chain, task efficiency,
         discoveries and decisions per role, the model's track record (matplotlib, Agg)
      ─► one self-contained HTML file (figures inline as PNG, tables beside them); --png DIR
         also writes each figure as DIR/<name>.png

Exit codes: 0 written; 2 bad input: a missing or unreadable snapshot, or an output path that
cannot be written (one line on stderr naming it).  A section without data says so ("no model
yet": the `models` database is empty) rather than drawing empty axes.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import sys
import time
from pathlib import Path

from .data import ReportError, Snapshot, load

PROG = "syndicate report"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ReportError(f"{PROG}: {message}")


def _table(rows: list[tuple], head: tuple) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _tables(name: str, snap: Snapshot) -> str:
    if name == "latency":
        rows = [(what, role, len(xs), f"{_pct(xs, .5):.0f}", f"{_pct(xs, .99):.0f}")
                for what, d in (("detection", snap.detect_us), ("search", snap.search_us),
                                ("decision", snap.decide_us)) for role, xs in sorted(d.items()) if xs]
        return _table(rows, ("latency", "role", "n", "p50 µs", "p99 µs")) if rows else ""
    if name == "profit":
        rows = [(c, w, len(s), sum(v for _, v in s)) for (c, w), s in sorted(snap.profit.items())]
        rows += [(c, "gas spent (wei)", "", g) for c, g in sorted(snap.gas_wei.items()) if g]
        states = ", ".join(f"{k} {v}" for k, v in snap.outcome_states.most_common())
        return (_table(rows, ("chain", "what", "outcomes", "total")) +
                f"<p>executor outcomes: {html.escape(states or 'none')}</p>")
    if name == "efficiency":
        rows = [(role, task, s.get("runs"), s.get("completed"), s.get("errors"),
                 s.get("missed_intervals"), f"{float(s.get('busy_ms') or 0):.0f}")
                for role, tasks in sorted(snap.tasks.items()) for task, s in sorted(tasks.items())]
        return _table(rows, ("role", "task", "runs", "completed", "errors", "missed", "busy ms"))
    if name == "discoveries":
        rows = [(role, sum(c.values()), ", ".join(f"{k} {v}" for k, v in c.most_common()))
                for role, c in sorted(snap.discoveries.items())]
        rows2 = [(role, sum(c.values()), ", ".join(f"{k} {v}" for k, v in c.most_common()))
                 for role, c in sorted(snap.decisions.items())]
        return (_table(rows, ("role", "discoveries", "by kind")) +
                _table(rows2, ("role", "decisions", "by outcome")))
    if name == "track-record":
        if not snap.models:
            return "<p><b>no model yet</b>: the snapshot's <code>models</code> database is empty.</p>"
        rows = [(p, len(recs), ", ".join(sorted(recs[-1])[:12]) if recs else "")
                for p, recs in sorted(snap.models.items())]
        return _table(rows, ("model", "records", "fields of the newest"))
    return ""


def render(snap: Snapshot, figs, generated: str) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>syndicate report: "
             f"{html.escape(snap.path)}</title><style>body{{font-family:sans-serif;margin:2em}}"
             f"table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;"
             f"padding:2px 6px;font-size:12px}}img{{max-width:100%}}</style></head><body>",
             f"<h1>syndicate report</h1><p>snapshot <code>{html.escape(snap.path)}</code>, "
             f"schema {html.escape(str(snap.schema.get('schema_version', snap.schema)))}, "
             f"generated {html.escape(generated)}</p>"]
    if snap.empty():
        parts.append("<p><b>This snapshot holds no decisions, outcomes, checkpoints or "
                     "discoveries yet.</b></p>")
    for name, title, fig in figs:
        parts.append(f"<h2 id='{name}'>{html.escape(title)}</h2>")
        if fig is None:
            parts.append("<p>no data in this snapshot</p>" if name != "track-record" else "")
        else:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90)
            data = base64.b64encode(buf.getvalue()).decode()
            parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
        parts.append(_tables(name, snap))
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except ReportError as e:
        msg = str(e)
        print(msg if msg.startswith(PROG) else f"{PROG}: {msg}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    p = _Parser(prog=PROG, description="An HTML report (and PNGs) from an LMDB snapshot, offline.")
    p.add_argument("snapshot", help="the store directory (var/lmdb/<name>) or a snapshot copy")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file (default report.html)")
    p.add_argument("--png", metavar="DIR", help="also write each figure as DIR/<name>.png")
    args = p.parse_args(argv)
    snap = load(args.snapshot)
    from . import figures
    figs = figures.build(snap)
    try:
        doc = render(snap, figs, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        out = Path(args.output)
        try:
            out.write_text(doc)
        except OSError as e:
            raise ReportError(f"{out}: cannot write the report: {e}") from None
        written = []
        if args.png:
            d = Path(args.png)
            try:
                d.mkdir(parents=True, exist_ok=True)
                for name, _, fig in figs:
                    if fig is not None:
                        fig.savefig(d / f"{name}.png", dpi=100)
                        written.append(str(d / f"{name}.png"))
            except OSError as e:
                raise ReportError(f"{d}: cannot write the figures: {e}") from None
    finally:
        figures.close(figs)
    drawn = sum(1 for _, _, f in figs if f is not None)
    print(f"{out}: {drawn} of {len(figs)} figures" + (f"; {len(written)} PNGs in {args.png}"
                                                       if args.png else "")
          + ("" if snap.models else "; no model yet"))
    return 0
