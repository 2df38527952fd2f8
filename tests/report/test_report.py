"""`syndicate report`: an HTML report and PNGs from a real LMDB store.

The store is written with the engine's own store API (a real LMDB file), with the records the
roles write (decisions, the executor's ledger, checkpoints, discoveries); the end-to-end case
reports on the store a `syndicate replay --state` run left.  Checked: the HTML parses and
holds every section, each figure has axes with data in them, each PNG is not blank.
"""
from __future__ import annotations

import html.parser
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import report
from engine.core.store import Store
from engine.report import data, figures

ROOT = Path(__file__).resolve().parents[2]


def _opportunity(role: str, chain: str, i: int, approved: bool) -> dict:
    return {"kind": "opportunity", "role": role, "event": f"{chain}:0x{i:064x}:0x{i:064x}:0",
            "chain": chain, "approved": approved, "code": "ok" if approved else "no-profitable-route",
            "reason": "ok" if approved else "none of the 2 cycles pays its fees",
            "net": str(10 ** 15 * i) if approved else None, "t_origin": 1_000_000 * i,
            "t_event": 1_000_000 * i + 300_000 + 1_000 * i, "search_us": 500.0 + 40 * i,
            "decide_us": 200.0 + 7 * i}


def write_store(path: Path, *, model: bool) -> None:
    store = Store.open(path)
    try:
        t = time.time()
        for role, chain in (("arbitrum-spotter", "arbitrum"), ("base-analyst", "base")):
            store.append_many("opportunities", role,
                              [_opportunity(role, chain, i, i % 3 == 0) for i in range(1, 25)]).wait(5)
            for k in range(3):
                store.save_checkpoint(role, {
                    "checksum": {"state": {"n": k}, "runs": 10 * (k + 1), "completed": 10 * (k + 1) - 1,
                                 "errors": 0, "busy_ms": 900.0 * (k + 1), "completion_rate": 0.95},
                    "gas-trend": {"state": {}, "runs": k + 1, "completed": k + 1, "errors": 0,
                                  "busy_ms": 5.0 * (k + 1), "completion_rate": 1.0}})
                time.sleep(0.02)
            for k in range(4):
                store.append_discovery(role, {"task": "gas-trend", "kind": "gas-trend" if k % 2 else
                                              "block-times", "chain": chain, "t": t + k})
        store.flush(5)
        for i in range(1, 9):
            key = f"arbitrum-spotter|arbitrum:0x{i:064x}"
            chain = "arbitrum" if i % 2 else "base"
            store.append("outcomes", "flash-loan-executor",
                         {"key": key, "state": "signed", "chain": chain, "token": "0x" + "11" * 20,
                          "predicted": str(10 ** 15 * i), "t": t + i})
            store.append("outcomes", "flash-loan-executor",
                         {"key": key, "state": "landed" if i != 4 else "reverted", "chain": chain,
                          "predicted": str(10 ** 15 * i), "realised": str(10 ** 15 * i - 7),
                          "gas_cost_wei": "2100000", "t": t + i + 0.5})
        if model:
            for n in range(1, 6):
                store.append("models", "outcome-model", {"n": 10 * n, "accuracy": 0.5 + n / 20,
                                                         "log_loss": 0.7 - n / 20, "t": t + n})
    finally:
        store.close()


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id"]

    def handle_data(self, d):
        self.text.append(d)


def _has_data(ax) -> bool:
    lines = any(len(ln.get_xdata()) > 0 for ln in ax.lines)
    bars = any((p.get_height() > 0 or p.get_width() > 0) if hasattr(p, "get_height")
               else len(p.get_path().vertices) > 1 for p in ax.patches)   # bars; step histograms
    points = any(len(c.get_offsets()) > 0 for c in ax.collections)
    return lines or bars or points


def _not_blank(png: Path) -> None:
    from PIL import Image
    with Image.open(png) as im:
        rgb = im.convert("RGB")
        assert rgb.size[0] > 200 and rgb.size[1] > 100
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 20, f"{png} looks blank ({len(colours)} colours)"


@pytest.mark.parametrize("model", [False, True])
def test_the_report_renders(tmp_path, model, capsys):
    store = tmp_path / "lmdb"
    write_store(store, model=model)
    snap = data.load(store)
    figs = figures.build(snap)
    try:
        for name, _, fig in figs:       # every figure drawn, its axes labelled and holding data
            assert fig is not None, name
            axes = [a for a in fig.axes if a.has_data()]
            assert axes and all(_has_data(a) for a in axes), name
            assert all(a.get_title() for a in fig.axes), name
    finally:
        figures.close(figs)
    out, pngs = tmp_path / "report.html", tmp_path / "png"
    assert report.main([str(store), "-o", str(out), "--png", str(pngs)]) == 0
    p = _Tags()
    p.feed(out.read_text())
    p.close()
    assert p.tags.count("img") == 5 and p.tags.count("h2") == 5
    assert set(p.ids) == {"latency", "profit", "efficiency", "discoveries", "track-record"}
    text = " ".join(p.text)
    assert ("no model yet" in text) is not model
    assert "landed 7" in text and "reverted 1" in text
    for name in ("latency", "profit", "efficiency", "discoveries", "track-record"):
        _not_blank(pngs / f"{name}.png")
    assert ("no model yet" in capsys.readouterr().out) is not model


def test_an_empty_store_says_so(tmp_path):
    store = tmp_path / "lmdb"
    Store.open(store).close()
    out = tmp_path / "r.html"
    assert report.main([str(store), "-o", str(out)]) == 0
    text = out.read_text()
    assert "holds no decisions" in text and "no model yet" in text and "<img" not in text


@pytest.mark.parametrize("what", ["missing", "corrupt", "not-a-store", "output"])
def test_bad_snapshot_is_exit_2_naming_it(tmp_path, what, capsys):
    store = tmp_path / "lmdb"
    out = tmp_path / "r.html"
    if what == "corrupt":
        write_store(store, model=False)
        raw = bytearray((store / "data.mdb").read_bytes())
        raw[:4096] = b"\xde\xad" * 2048            # the meta pages gone
        (store / "data.mdb").write_bytes(bytes(raw))
    elif what == "not-a-store":
        store.mkdir()
        (store / "notes.txt").write_text("hello")
    elif what == "output":
        write_store(store, model=False)
        out = tmp_path / "no" / "such" / "dir" / "r.html"
    assert report.main([str(store), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(store if what != "output" else out) in err, err
    assert err.count("\n") == 1, err


def test_a_replay_then_its_report(shared_data, tmp_path):
    """As a user would: replay a real day keeping the state, then report on its store."""
    day = shared_data / "chain/demeter-fetch_samples/polygon-0x45dda9cb7c25131df268515131f647d726f50608-2022-01-05.raw.csv"
    state = tmp_path / "state"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "replay", str(day), "--state", str(state)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (store,) = (state / "lmdb").iterdir()
    out, pngs = tmp_path / "r.html", tmp_path / "png"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "report", str(store), "-o", str(out),
                        "--png", str(pngs)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    t = _Tags()
    t.feed(out.read_text())
    assert "latency" in t.ids and t.tags.count("img") >= 3      # latency, efficiency, decisions
    text = " ".join(t.text)
    assert "polygon-specialist" in text and "no-cycle 5" in text
    for png in pngs.iterdir():
        _not_blank(png)
