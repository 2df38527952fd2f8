"""`syndicate replay --manifest`: logs recorded from the devnet (eth_getLogs) replayed through a
real engine whose agents know the devnet's tokens and lenders and whose executor simulates on
the devnet's node: the recorded gap is approved and paper-simulated, and the agent's predicted
profit is what the node's eth_call of the exact calldata says."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tradehelp import gap

ROOT = Path(__file__).resolve().parents[2]


def test_a_recorded_gap_replayed_with_the_manifest(arb, devnet, tmp_path):
    c = arb
    b0 = c.w3.eth.block_number
    pool = gap(c)                                   # 300 WETH into uniswap_v2 WETH/USDC
    b1 = c.w3.eth.block_number
    logs = c.w3.provider.make_request("eth_getLogs", [{
        "fromBlock": hex(b0 + 1), "toBlock": hex(b1),
        "address": [p["address"] for p in c.m["pools"]]}])["result"]
    assert logs, "the gap swap left no log"
    f = tmp_path / "recorded.json"
    f.write_text(json.dumps([{**g, "chain": "arbitrum"} for g in logs]))
    manifest = tmp_path / "manifest.json"
    devnet.write_manifest(manifest)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    p = subprocess.run([sys.executable, "-m", "engine.cli", "replay", str(f), "--manifest",
                        str(manifest), "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "TMPDIR": str(tmpdir)})
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    swaps = [x for x in lines if x["type"] == "swap"]
    summary = lines[-1]
    assert summary["pools"]["arbitrum"] == len(c.m["pools"])      # every pool, from the node
    (sw,) = [s for s in swaps if s["pool"] == pool["address"].lower()]
    (d,) = sw["decisions"]
    assert d["role"] == "arbitrum-spotter" and d["approved"], d
    ex = sw["executor"]
    assert ex is not None and ex["state"] == "paper", ex
    assert int(ex["simulated"]) == int(ex["predicted"]) > 0, ex
    assert list(tmpdir.iterdir()) == []
