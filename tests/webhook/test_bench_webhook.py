"""`syndicate bench webhook` runs end to end (a smoke run: figures are not asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_webhook_smoke(shared_data):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "webhook", "-n", "60",
                        "--keep", "300", "--json", "--data", str(shared_data)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [c["name"] for c in doc["results"]][:2] == ["accepted deliveries/s, 1 sender",
                                                       "sent -> 200 latency, 1 sender"]
    assert len(doc["results"]) == 8       # 8 senders: also an inbox a day in, trimmed as it fills
    assert "an inbox a day in" in doc["results"][5]["name"]
    assert all(doc[f"refused_{c}"] == 0 for c in (1, 8, 64, "8_steady"))   # every one got its 200
    for c in (1, 8, 64, "8_steady"):    # the inbox's own fsyncs, from the server's /health
        f = doc[f"inbox_fsync_{c}"]
        assert f["fsyncs"] >= 1 and f["deliveries_per_fsync"] >= 1 and 0 < f["p50_s"] <= f["max_s"]
    lat = doc["results"][3]
    assert lat["ours"]["n"] == lat["baseline"]["n"] == 40         # 60 minus the 20 warm-up deliveries
    assert not list(Path("/tmp").glob("syndicate-bench-webhook-*"))  # temp dirs removed


def test_bench_webhook_without_data_is_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "bench", "webhook", "--data",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no Moralis payloads" in r.stderr
