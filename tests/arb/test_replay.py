"""The real Ethereum and Polygon days through detection and search (skips without ../shared)."""
from __future__ import annotations

from engine.bench import decide


def test_replay_real_days(shared_data):
    chain = shared_data / "chain"
    eth = decide.replay_ethereum_v3(chain, gas_gwei=20.0, threshold=50)
    assert eth["swaps"] > 6000                                     # both pools, whole day
    assert 240 <= eth["gap_bps"]["median"] * 10 <= 260            # SOURCES.md: median 24 bp
    assert eth["swaps_ge_threshold"] and all(b["bps"] >= 50 for b in eth["swaps_ge_threshold"])
    # the biggest real gaps (up to 102 bp) exceed the two pools' 35 bp of fees: found, and
    # every opportunity reported is gross-positive after both pool fees
    assert eth["opportunities"] and all(int(o["gross"]) > 0 for o in eth["opportunities"])
    poly = decide.replay_polygon(chain, threshold=50)
    assert sum(d["swaps"] for d in poly.values()) > 7000
    assert sum(len(d["swaps_ge_threshold"]) for d in poly.values()) >= 1
    v2 = decide.replay_ethereum_v2_blocks(chain, gas_gwei=20.0, threshold=50)
    assert v2["sync_logs"] == 69 and v2["pairs"] > 10


def test_replay_without_data_is_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(decide, "SHARED", tmp_path / "absent")
    assert decide.main(["--replay"]) == 2
    assert "no shared data" in capsys.readouterr().err


def test_bench_small_run_emits_json(capsys):
    assert decide.main(["--json", "--events", "5", "--sizes", "10"]) == 0
    out = capsys.readouterr().out
    assert '"bench": "decide"' in out and "ratio_p99" in out
