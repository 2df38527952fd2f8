"""`syndicate bench all`: the guide's performance table in one run, each figure beside its
three tiers (minimum, competitive, elite) and beside the baseline its benchmark measured in the
same run.

    figure                     benchmark (small sizes)          ours              baseline
    background efficiency      bench switch                     min over roles    -
    task switch time           bench switch                     agent: signal     multiprocessing.Queue
                                                                sent → handling
    state save time            bench store --quick              switch-path save  sqlite WAL commit
    opportunity detection      bench detect (devnet)            log bytes → ring  web3.py subscriber
    decision making            bench decide                     event → decision  float grid search
    success rate (devnet)      bench e2e (devnet, live)         landed with       web3.py loop
                                                                profit / sent

Each benchmark runs as its own `syndicate bench NAME --json` process, one after another (they
must not share the two cores), and its JSON is read back.  A latency's tier is judged on its p99
(the guide's figures are limits), efficiency and success rate on their value.  A benchmark that
fails or is missing is a row saying so; the others still run.  The success rate comes from
`bench e2e --json`: `extra.ours.success_rate` (0-1) beside `extra.baseline.success_rate`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

# figure -> (label, unit, minimum, competitive, elite, "max": lower is better | "min")
TIERS = {
    "efficiency": ("background task efficiency", "%", 80.0, 90.0, 95.0, "min"),
    "switch": ("task switch time", "ms", 2.0, 1.5, 1.0, "max"),
    "save": ("state save time", "ms", 10.0, 5.0, 2.0, "max"),
    "detect": ("opportunity detection", "ms", 100.0, 50.0, 20.0, "max"),
    "decide": ("decision making", "ms", 50.0, 20.0, 10.0, "max"),
    "success": ("success rate (devnet)", "%", 60.0, 80.0, 90.0, "min"),
}
# benchmark -> its arguments at the small sizes of `bench all` (`--full`: the benchmark's own)
SMALL = {
    "switch": ["--events", "1500", "--rate", "200"],
    "store": ["--quick"],
    "detect": ["--swaps", "400", "--rate", "100"],
    "decide": ["--sizes", "100", "--events", "100"],
    "e2e": ["--trades", "20"],
}
FIGURES_OF = {"switch": ("efficiency", "switch"), "store": ("save",), "detect": ("detect",),
              "decide": ("decide",), "e2e": ("success",)}


def _result(doc: dict, starts: str) -> dict | None:
    return next((r for r in doc.get("results", []) if str(r.get("name", "")).startswith(starts)),
                None)


def _lat(r: dict | None, note: str) -> dict | None:
    """A latency result (µs) as the row's figures in ms."""
    if r is None:
        return None
    o, b = r.get("ours") or {}, r.get("baseline") or {}
    ms = (lambda v: None if v is None else v / 1000.0)
    return {"p50": ms(o.get("p50")), "p99": ms(o.get("p99")), "value": ms(o.get("p99")),
            "baseline_p50": ms(b.get("p50")), "baseline_p99": ms(b.get("p99")),
            "baseline": b.get("label"), "ours": o.get("label"), "note": note}


def extract(bench: str, doc: dict) -> dict[str, dict | None]:
    """The figures of one benchmark's JSON document."""
    if bench == "switch":
        eff = (doc.get("background_efficiency") or doc.get("extra", {}).get("background_efficiency")
               or {})
        vals = [v for v in eff.values() if isinstance(v, (int, float))]
        return {"efficiency": {"value": 100.0 * min(vals), "note": "lowest role: "
                               + min(eff, key=lambda k: eff[k] if isinstance(eff[k], (int, float))
                                     else 2.0)} if vals else None,
                "switch": _lat(_result(doc, "signal sent → handling started, agent"),
                               "agent: signal sent → handling started")}
    if bench == "store":
        return {"save": _lat(_result(doc, "switch-path save"),
                             "time save() held the switch, 1 role")}
    if bench == "detect":
        return {"detect": _lat(_result(doc, "detect:"), "log bytes received → pool record")}
    if bench == "decide":
        rows = [r for r in doc.get("results", []) if "search" in str(r.get("name", ""))]
        worst = max(rows, key=lambda r: (r.get("ours") or {}).get("p99") or 0, default=None)
        return {"decide": _lat(worst, f"worst of: {', '.join(r['name'] for r in rows)}")}
    if bench == "e2e":      # extra.ours / extra.baseline: {"success_rate": 0-1, "sent", ...}
        extra = doc.get("extra") or {}
        ours, base = extra.get("ours") or {}, extra.get("baseline") or {}
        rate, brate = ours.get("success_rate"), base.get("success_rate")
        if not isinstance(rate, (int, float)):
            return {"success": None}
        row = {"value": 100.0 * rate, "note": f"bench e2e: {ours.get('landed_profitable')} of "
               f"{ours.get('sent')} sent landed with profit"}
        if isinstance(brate, (int, float)):
            row |= {"baseline_value": 100.0 * brate, "baseline": "web3.py loop"}
        return {"success": row}
    return {}


def tier(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    _, _, lo, mid, hi, way = TIERS[figure]
    ok = (lambda limit: value <= limit) if way == "max" else (lambda limit: value >= limit)
    return "elite" if ok(hi) else "competitive" if ok(mid) else "minimum" if ok(lo) else "below"


def run_bench(bench: str, args: list[str], timeout: float) -> tuple[dict | None, str]:
    try:
        r = subprocess.run([sys.executable, "-m", "engine.cli", "bench", bench, "--json", *args],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
    try:
        return json.loads(r.stdout[r.stdout.index("{"):]), ""
    except ValueError:
        return None, "no JSON document in its output"


def main(argv: list[str]) -> int:
    from . import BENCHES
    ap = argparse.ArgumentParser(prog="syndicate bench all", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated benchmarks of: "
                    + ", ".join(SMALL))
    ap.add_argument("--full", action="store_true", help="each benchmark at its own default sizes")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    only = [b.strip() for b in args.only.split(",") if b.strip()] or list(SMALL)
    bad = [b for b in only if b not in SMALL]
    if bad:
        print(f"syndicate bench all: --only: unknown {bad} (of: {', '.join(SMALL)})", file=sys.stderr)
        return 2
    rows: dict[str, dict] = {}
    for bench in only:
        t0 = time.monotonic()
        if bench not in BENCHES:
            figs, why = {f: None for f in FIGURES_OF[bench]}, f"`bench {bench}` is not built yet"
        else:
            print(f"bench all: {bench} ...", file=sys.stderr, flush=True)
            doc, why = run_bench(bench, [] if args.full else SMALL[bench], args.timeout)
            figs = extract(bench, doc) if doc is not None else {f: None for f in FIGURES_OF[bench]}
        for f in FIGURES_OF[bench]:
            label, unit, lo, mid, hi, way = TIERS[f]
            row = dict(figs.get(f) or {})
            rows[f] = {"figure": label, "unit": unit, "bench": bench, **row,
                       "tiers": {"minimum": lo, "competitive": mid, "elite": hi,
                                 "better": "lower" if way == "max" else "higher"},
                       "tier": tier(f, row.get("value")),
                       "seconds": round(time.monotonic() - t0, 1)}
            if not figs.get(f):
                rows[f]["error"] = why or "the benchmark gave no such figure"
    if args.json:
        from .report import host_info
        print(json.dumps({"bench": "all", "host": host_info(), "figures": rows}, indent=2))
    else:
        print(render(rows))
    return 0


def render(rows: dict[str, dict]) -> str:
    def n(v):
        return "-" if v is None else f"{v:.3g}"
    out = [f"{'figure':<28} {'ours p50 / p99 or value':>24} {'baseline p50 / p99':>20} "
           f"{'minimum':>8} {'compet.':>8} {'elite':>8}  tier"]
    for f, r in rows.items():
        t = r["tiers"]
        cmp = "<" if t["better"] == "lower" else ">"
        ours = (f"{n(r.get('p50'))} / {n(r.get('p99'))}" if "p99" in r else n(r.get("value")))
        base = (f"{n(r.get('baseline_p50'))} / {n(r.get('baseline_p99'))}"
                if r.get("baseline_p50") is not None else n(r.get("baseline_value")))
        out.append(f"{r['figure'] + ' [' + r['unit'] + ']':<28} {ours:>24} {base:>20} "
                   f"{cmp + n(t['minimum']):>8} {cmp + n(t['competitive']):>8} "
                   f"{cmp + n(t['elite']):>8}  {r['tier']}"
                   + (f"  ({r['error']})" if r.get("error") else ""))
    return "\n".join(out)
