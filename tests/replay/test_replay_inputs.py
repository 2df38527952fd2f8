"""The replay's input reading and pool seeding (engine/replay/inputs.py), no engine needed; and
a replay stopped by SIGTERM half-way leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.replay import inputs

ROOT = Path(__file__).resolve().parents[2]
SYNC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
V3_SWAP = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
V3_MINT = "0x7a53080ba414158be7ec69b987b5fb7d07dee101fe85488f0853ae16239d0bde"


def _w(x: int) -> str:
    return format(x % (1 << 256), "064x")


def _topic(x: int) -> str:
    return "0x" + _w(x)


def test_snake_case_logs_sorted_and_hashes_made(tmp_path):
    pool = "0x" + "ab" * 20
    rows = [{"address": pool.upper().replace("0X", "0x"), "topics": [SYNC], "data": "0x" + _w(5) + _w(7),
             "block_number": 12, "transaction_hash": "0x" + "01" * 32, "log_index": 3, "chain": "base"},
            {"address": pool, "topics": [SYNC], "data": "0x" + _w(1) + _w(2), "block_number": 11,
             "block_hash": "0x" + "ee" * 32, "transaction_hash": "0x" + "02" * 32, "log_index": 9,
             "chain": "base", "block_timestamp": "2023-05-02 12:19:59"}]
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    got = inputs.read_files([str(f)])
    logs = got.logs["base"]
    assert [g["blockNumber"] for g in logs] == [11, 12]
    assert logs[0]["blockHash"] == "0x" + "ee" * 32 and logs[0]["t"] == 1683029999.0
    assert logs[1]["blockHash"] == "0x" + format(12, "064x") and got.synthetic_hashes
    assert logs[1]["address"] == pool
    inputs.seed_pools(got)
    seed = got.pools["base"][pool]
    assert seed["kind"] == "v2" and seed["state"] == {"reserve0": "1", "reserve1": "2"}
    assert (seed["block"], seed["log_index"]) == (11, 9) and seed["placeholder_tokens"]


def test_v3_seed_grants_the_days_ticks_and_a_pool_file_gives_tokens(tmp_path):
    pool = "0x" + "cd" * 20
    swap_data = "0x" + _w(-5) + _w(9) + _w(1 << 96) + _w(10 ** 18) + _w(-120)
    mint_data = "0x" + _w(0) + _w(10 ** 15) + _w(1) + _w(1)
    logs = [{"address": pool, "topics": [V3_MINT, _topic(1), _topic(-600), _topic(600)],
             "data": mint_data, "blockNumber": 5, "blockHash": "0x" + "aa" * 32,
             "transactionHash": "0x" + "03" * 32, "logIndex": 0},
            {"address": pool, "topics": [V3_SWAP, _topic(2), _topic(3)], "data": swap_data,
             "blockNumber": 6, "blockHash": "0x" + "bb" * 32, "transactionHash": "0x" + "04" * 32,
             "logIndex": 1}]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(logs))
    pools = tmp_path / "pools.json"
    pools.write_text(json.dumps({"pools": [{"address": pool, "kind": "v3", "token0": "0x" + "11" * 20,
                                            "token1": "0x" + "22" * 20, "fee": 500, "tick_spacing": 10}]}))
    got = inputs.read_files([str(f)], chain="polygon")
    inputs.seed_pools(got, inputs.read_pool_file(str(pools)))
    seed = got.pools["polygon"][pool]
    assert seed["state"] == {"sqrt_price_x96": str(1 << 96), "liquidity": str(10 ** 18), "tick": -120}
    assert (seed["fee"], seed["tick_spacing"], seed["token0"]) == (500, 10, "0x" + "11" * 20)
    assert seed["gross"] == {"-600": str(inputs.GRANTED_GROSS), "600": str(inputs.GRANTED_GROSS)}
    assert not seed["placeholder_tokens"]
    # the file says v2, the logs say v3: named
    pools.write_text(json.dumps([{"address": pool, "kind": "v2", "token0": "0x" + "11" * 20,
                                  "token1": "0x" + "22" * 20}]))
    with pytest.raises(inputs.BadInput, match=f"pool {pool}: the pool-state file says v2"):
        inputs.seed_pools(got, inputs.read_pool_file(str(pools)))


def test_a_pool_file_state_seeds_before_any_log(tmp_path):
    pool = "0x" + "ef" * 20
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"address": pool, "topics": [SYNC], "data": "0x" + _w(8) + _w(9),
                             "blockNumber": 20, "transactionHash": "0x" + "05" * 32, "logIndex": 0}))
    pools = tmp_path / "pools.json"
    pools.write_text(json.dumps([{"address": pool, "kind": "v2", "token0": "0x" + "11" * 20,
                                  "token1": "0x" + "22" * 20, "fee_bps": 25, "block": 19,
                                  "state": {"reserve0": "100", "reserve1": "100"}}]))
    got = inputs.read_files([str(f)], chain="arbitrum")
    inputs.seed_pools(got, inputs.read_pool_file(str(pools)))
    seed = got.pools["arbitrum"][pool]
    assert seed["state"] == {"reserve0": "100", "reserve1": "100"} and seed["block"] == 19
    assert seed["log_index"] == -1 and seed["fee_bps"] == 25     # the block-20 Sync applies


@pytest.mark.parametrize("text, error", [
    ('[{"address": "0x12"}]', "address is not 20 bytes"),
    ('[{"address": "0x' + "ab" * 20 + '", "topics": "x"}]', "topics is not a list"),
    ('[1, 2', "not a JSON array"),
])
def test_bad_logs_are_named(tmp_path, text, error):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(inputs.BadInput, match=error) as e:
        inputs.read_files([str(f)], chain="base", strict=True)
    assert str(f) in str(e.value)


def test_sigterm_mid_replay_leaves_nothing_behind(tmp_path):
    """Replay at 1x (a day would take a day), stop it with SIGTERM once its engine is up."""
    pool = "0x" + "a7" * 20
    f = tmp_path / "slow.jsonl"
    e = 10 ** 18
    f.write_text("\n".join(json.dumps(
        {"address": pool, "topics": [SYNC], "data": "0x" + _w(1000 * e + k) + _w(1000 * e),
         "blockNumber": 10 + k, "transactionHash": "0x" + _w(k), "logIndex": 0,
         "blockTimestamp": 1000 + 600 * k, "chain": "base"}) for k in range(5)))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "replay", str(f), "--speed", "1x"],
                         cwd=ROOT, env={**os.environ, "TMPDIR": str(tmpdir)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = f"syn.replay{p.pid}."
    try:
        deadline = time.monotonic() + 120
        while not any(n.startswith(prefix) for n in os.listdir("/dev/shm")):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the replay's engine did not start"
            time.sleep(0.1)
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    assert list(tmpdir.iterdir()) == []
    mine = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(tmpdir))]
    assert mine == [], "engine processes outlived the replay"


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
