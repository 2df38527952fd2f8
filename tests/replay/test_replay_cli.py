"""`syndicate replay`: real days through a real engine (a subprocess, as a user runs it).

The swaps that crossed the 0.5 % threshold are counted here independently of the engine: the
raw CSV's data words sliced by hand and compared in integers (|p1 - p0| * 10 000 >= 50 * p0 on
p = sqrtPriceX96², the previous swap's price), no engine code involved.  Each run must leave
nothing behind: no shared memory of its engine, no temporary directory (TMPDIR is the test's).
"""
from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWAP_TOPIC0 = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
POLY = "chain/demeter-fetch_samples/polygon-0x45dda9cb7c25131df268515131f647d726f50608-2022-01-05.raw.csv"
ETH = ("chain/demeter-fetch_samples/ethereum-0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640-2024-01-05.raw.csv",
       "chain/demeter-fetch_samples/ethereum-0x8ad599c3a0ff1de082011efddc58f1908eb6e6d8-2024-01-05.raw.csv")


def replay(tmp_path: Path, *args, timeout: float = 600) -> tuple[subprocess.CompletedProcess, list]:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    p = subprocess.run([sys.executable, "-m", "engine.cli", "replay", *map(str, args)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert list(tmpdir.iterdir()) == [], "the replay left its temporary directory behind"
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("syn.replay") and _dead(n)], \
        "a replay engine left shared memory behind"
    return p, lines


def _dead(segment: str) -> bool:
    """A segment of a replay engine whose CLI (its pid in the name) is gone."""
    pid = segment.split(".")[1][len("replay"):]
    return pid.isdigit() and not Path(f"/proc/{pid}").exists()


def independent_crossings(path: Path) -> set[tuple[str, int]]:
    """(tx, log index) of every V3 Swap whose price moved >= 50 bps from the previous swap's."""
    out, prev = set(), None
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        tcol = "pool_topics" if "pool_topics" in rows.fieldnames else "topics"
        dcol, icol = ("pool_data", "pool_log_index") if tcol == "pool_topics" else ("data", "log_index")
        for row in rows:
            topics = ast.literal_eval(row[tcol])
            if not topics or topics[0].lower() != SWAP_TOPIC0:
                continue
            words = row[dcol][2:]
            sqrt_price = int(words[128:192], 16)        # the third 32-byte word
            p = sqrt_price * sqrt_price
            if prev is not None and abs(p - prev) * 10_000 >= 50 * prev:
                out.add((row["transaction_hash"].lower(), int(row[icol])))
            prev = p
    return out


def test_a_real_day_finds_exactly_the_independent_count(shared_data, tmp_path):
    """Polygon USDC.e/WETH 0.05 %, 2022-01-05, the whole day (4 158 logs)."""
    want = independent_crossings(shared_data / POLY)
    assert len(want) >= 3                   # the day has a few 0.5 % moves (5 counted here)
    p, lines = replay(tmp_path, shared_data / POLY, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    swaps = [x for x in lines if x["type"] == "swap"]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["engine_exit"] == 0
    assert {(s["tx"], s["log_index"]) for s in swaps} == want
    assert len(swaps) == len(want) == summary["crossed"]
    assert summary["logs"] == 4158 and summary["bad_lines"] == 0 and summary["left_behind"] == []
    for s in swaps:          # every one reached the chain's agent and got exactly one decision
        assert s["impact_bps"] >= 50
        assert [d["role"] for d in s["decisions"]] == ["polygon-specialist"], s
        d = s["decisions"][0]
        assert d["approved"] is False and d["code"] == "no-cycle" and d["reason"], d
    assert summary["decisions"]["missing"] == 0


def test_two_pools_of_a_real_day_with_a_pool_file(shared_data, tmp_path):
    """Ethereum USDC/WETH 0.05 % and 0.3 % of 2024-01-05 fed into the base slot, with their
    real tokens from a pool-state file: both pools in one graph, cycles between them priced."""
    pools = tmp_path / "pools.json"
    usdc, weth = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
    pools.write_text(json.dumps([
        {"address": "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640", "kind": "v3", "token0": usdc,
         "token1": weth, "fee": 500, "tick_spacing": 10},
        {"address": "0x8ad599c3a0ff1de082011efddc58f1908eb6e6d8", "kind": "v3", "token0": usdc,
         "token1": weth, "fee": 3000, "tick_spacing": 60}]))
    want = independent_crossings(shared_data / ETH[0]) | independent_crossings(shared_data / ETH[1])
    p, lines = replay(tmp_path, *(shared_data / f for f in ETH), "--chain", "base", "--pools",
                      pools, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    swaps = [x for x in lines if x["type"] == "swap"]
    assert {(s["tx"], s["log_index"]) for s in swaps} == want
    summary = lines[-1]
    assert summary["pools"] == {"base": 2} and summary["placeholder_tokens"] == 0
    for s in swaps:          # a cycle exists now: refused for its economics, not for the graph
        (d,) = s["decisions"]
        assert d["role"] == "base-analyst" and d["code"] not in ("no-cycle", "no-replica"), d


def _sync(pool: str, r0: int, r1: int, block: int, index: int, t: int) -> dict:
    return {"address": pool, "topics": ["0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"],
            "data": "0x" + format(r0, "064x") + format(r1, "064x"), "blockNumber": hex(block),
            "blockHash": "0x" + format(block, "064x"), "transactionHash": "0x" + format(block * 100 + index, "064x"),
            "logIndex": hex(index), "blockTimestamp": t, "chain": "arbitrum"}


def test_bad_lines_are_named_skipped_and_counted(tmp_path):
    e = 10 ** 18
    pool = "0x" + "a1" * 20
    good = [_sync(pool, 1000 * e, 1000 * e, 10, 0, 100), _sync(pool, 1010 * e, 990 * e, 11, 0, 101),
            _sync(pool, 1000 * e, 1000 * e, 12, 0, 102)]
    bad_data = dict(good[0], data="0x1234", logIndex="0x5")
    no_block = {k: v for k, v in good[0].items() if k != "blockNumber"}
    f = tmp_path / "logs.jsonl"
    f.write_text("\n".join([json.dumps(good[0]), "{not json", json.dumps(bad_data),
                            json.dumps(no_block), json.dumps(good[1]), json.dumps(good[2])]) + "\n")
    p, lines = replay(tmp_path, f, "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"{f}:line 2: not JSON" in p.stderr
    assert f"{f}:line 3:" in p.stderr and "32-byte words" in p.stderr
    assert f"{f}:line 4: no blockNumber" in p.stderr
    summary = lines[-1]
    assert summary["bad_lines"] == 3 and summary["logs"] == 3 and summary["chains"] == ["arbitrum"]
    swaps = [x for x in lines if x["type"] == "swap"]
    assert [s["block"] for s in swaps] == [11, 12]       # 198 bps, then back: both crossed
    assert all(s["decisions"][0]["role"] == "arbitrum-spotter" for s in swaps)
    # --strict: the first bad line stops it, nothing started
    p = subprocess.run([sys.executable, "-m", "engine.cli", "replay", str(f), "--strict"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and f"{f}:line 2: not JSON" in p.stderr and p.stdout == ""


@pytest.mark.parametrize("what", ["missing", "not-logs", "speed", "chain"])
def test_bad_input_is_exit_2_naming_it(tmp_path, what):
    f = tmp_path / "x.csv"
    args = [str(f)]
    if what == "missing":
        expect = f"{f}: cannot read"
    elif what == "not-logs":
        f.write_text("timestamp,netAmount0\n1,2\n")
        expect = f"{f}: not a log CSV"
    elif what == "speed":
        f.write_text("[]")
        args += ["--speed", "fast"]
        expect = "--speed 'fast'"
    else:
        f = tmp_path / "y.jsonl"
        f.write_text(json.dumps(_sync("0x" + "a1" * 20, 1, 1, 1, 0, 1)) + "\n")
        args = [str(f), "--chain", "ethereum"]
        expect = "unknown chain 'ethereum'"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "replay", *args, "--strict"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert expect in p.stderr, p.stderr


def test_speed_10x_follows_the_timestamps(tmp_path):
    pool = "0x" + "b2" * 20
    e = 10 ** 18
    f = tmp_path / "paced.json"          # a JSON array this time, 2 s of chain time
    f.write_text(json.dumps([_sync(pool, 1000 * e, 1000 * e, 10, 0, 100),
                             _sync(pool, 1010 * e, 990 * e, 11, 0, 101),
                             _sync(pool, 1000 * e, 1000 * e, 12, 0, 102)]))
    p, lines = replay(tmp_path, f, "--json", "--speed", "10x")
    assert p.returncode == 0, p.stderr[-3000:]
    summary = lines[-1]
    assert summary["speed"] == "10x" and summary["crossed"] == 2
    assert summary["replay_seconds"] >= 0.18          # 2 s of timestamps at 10x
