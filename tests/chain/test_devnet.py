"""The devnet: what it deploys, the manifest, the traffic generator, and that no anvil outlives
its owner on any exit path (normal, exception, SIGTERM, SIGINT, SIGKILL of the parent)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.chain.contracts import load, toolchain_missing

ROOT = Path(__file__).resolve().parent.parent.parent
PY = sys.executable

needs_toolchain = pytest.mark.skipif(bool(toolchain_missing()), reason=toolchain_missing() or "")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent may reap it a moment later)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# ---- what is deployed ------------------------------------------------------------------------

def test_manifest_describes_three_chains(devnet, tmp_path):
    m = devnet.manifest
    assert {n: c["chain_id"] for n, c in m["chains"].items()} == \
        {"arbitrum": 42161, "base": 8453, "polygon": 137}
    for name, c in m["chains"].items():
        w3 = devnet.w3(name)
        assert w3.eth.chain_id == c["chain_id"]
        assert c["rpc_url"] == devnet.rpc_url(name) and c["ws_url"] == devnet.ws_url(name)
        assert c["rpc_url"].startswith("http://127.0.0.1:") and c["ws_url"].startswith("ws://127.0.0.1:")
        # tokens carry their real decimals, on chain too
        assert c["tokens"]["USDC" if "USDC" in c["tokens"] else "USDC.e"]["decimals"] == 6
        assert c["tokens"]["WETH"]["decimals"] == 18
        for sym, t in c["tokens"].items():
            assert load("DevToken").contract(w3, t["address"]).functions.decimals().call() == t["decimals"]
        v2 = [d for d in c["dexes"] if d["kind"] == "v2"]
        v3 = [d for d in c["dexes"] if d["kind"] == "v3"]
        assert len(v2) >= 2 and len({d["factory"] for d in v2}) == len(v2) and len(v3) == 1
        assert all(d["fee"] == 30 for d in v2)
        fees = {p["fee"] for p in c["pools"] if p["kind"] == "v3"}
        assert len(fees) >= 2
        for p in c["pools"]:
            assert int(p["token0"], 16) < int(p["token1"], 16)
            assert len(w3.eth.get_code(p["address"])) > 0
            if p["kind"] == "v3":
                pool = load("UniswapV3Pool").contract(w3, p["address"])
                assert pool.functions.fee().call() == p["fee"]
                assert pool.functions.tickSpacing().call() == p["tick_spacing"]
                assert pool.functions.liquidity().call() > 0
            else:
                r0, r1, _ = load("UniswapV2Pair").contract(w3, p["address"]).functions.getReserves().call()
                assert r0 > 0 and r1 > 0
    path = devnet.write_manifest(tmp_path / "m.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(m))


def test_pairs_come_from_the_real_v2_bytecode(devnet):
    """The pair address is CREATE2 with the real init-code hash 0x96e8ac42…845f."""
    from eth_utils import keccak, to_checksum_address
    c = devnet.manifest["chains"]["base"]
    init = keccak(hexstr=load("UniswapV2Pair").bytecode)
    assert init.hex() == "96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f"
    for p in c["pools"]:
        if p["kind"] != "v2":
            continue
        factory = next(d["factory"] for d in c["dexes"] if d["name"] == p["dex"])
        salt = keccak(bytes.fromhex(p["token0"][2:]) + bytes.fromhex(p["token1"][2:]))
        addr = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + init)[12:]
        assert to_checksum_address(addr) == p["address"]


def test_prices_are_realistic(devnet):
    c = devnet.manifest["chains"]["polygon"]
    w3 = devnet.w3("polygon")
    for p in c["pools"]:
        if p["kind"] != "v2":
            continue
        r0, r1, _ = load("UniswapV2Pair").contract(w3, p["address"]).functions.getReserves().call()
        t0, t1 = c["tokens"][p["symbol0"]], c["tokens"][p["symbol1"]]
        price = (r1 / 10 ** t1["decimals"]) / (r0 / 10 ** t0["decimals"])  # token1 per token0
        assert price == pytest.approx(t0["usd"] / t1["usd"], rel=2e-3)


# ---- traffic --------------------------------------------------------------------------------

def test_traffic_makes_small_and_big_swaps(devnet, arb):
    from engine.devnet import Traffic
    t = Traffic(devnet.manifest, rate=50, big_every=4, seed=3, chains=["arbitrum", "polygon"])
    big = [t.step(big=True) for _ in range(12)]
    assert all(abs(r.price_move) >= 0.005 for r in big), [r.price_move for r in big]
    small = [t.step(big=False) for _ in range(12)]
    assert all(abs(r.price_move) < 0.005 for r in small)
    assert {r.chain for r in big + small} == {"arbitrum", "polygon"}
    n = t.run(duration=1.0)
    # about 50/s when quiet; a loaded 2-core box gave 2 (behaviour, not speed: it swaps, capped)
    assert 1 <= n <= 200


def test_a_settled_swap_is_sent_before_the_pause_and_measured_after_it(devnet, arb):
    """bench e2e's traffic waits between sending a swap and reading its receipt and new price,
    so its own work stays out of the engine's reaction window: the swap is mined before the
    pause (automine), the record is read after it and is the same."""
    from engine.devnet import Traffic
    t = Traffic(devnet.manifest, seed=5, chains=["arbitrum"])
    w3 = devnet.w3("arbitrum")
    mined: list[int] = []
    real_sleep = time.sleep

    def sleep(s):       # the pause: by now the swap is in a block
        mined.append(w3.eth.block_number)
        real_sleep(s)
    before = w3.eth.block_number
    t0 = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("engine.devnet.traffic.time.sleep", sleep)
        rec = t.step(big=True, settle=0.3)
    assert time.monotonic() - t0 >= 0.3
    assert mined and mined[0] > before
    assert abs(rec.price_move) >= 0.005 and rec.tx.startswith("0x")


def test_traffic_goes_on_past_a_pool_at_the_end_of_its_liquidity(devnet, arb):
    """A V3 pool swapped to the periphery's price limit (every position crossed): the next swap
    the same way reverts with "SPL".  Traffic simulates V3 swaps first and turns them round
    or shrinks them, so neither `step` nor `run` dies on it."""
    from engine.devnet import Traffic
    pool = next(p for p in arb.m["pools"] if p["kind"] == "v3")
    sym0 = next(s for s, t in arb.m["tokens"].items() if t["address"] == pool["token0"])
    arb.swap(pool, sym0, arb.balance(pool["token0"], arb.deployer) // 2)
    v3 = arb.w3.eth.contract(pool["address"], abi=SLOT0_ABI)
    assert v3.functions.slot0().call()[1] < -800_000, "the pool is at the bottom of its range"
    t = Traffic(devnet.manifest, rate=50, seed=1, chains=["arbitrum"])
    t.chains = {"arbitrum": {**arb.m, "pools": [pool]}}
    t._start_price[pool["address"]] = 1e-300        # swaps lean down, into the limit
    moves = [t.step(big=True) for _ in range(4)]
    # the first one down would have reverted: it was turned round (token1 in)
    assert moves[0].token_in == pool["token1"] and all(m.pool == pool["address"] for m in moves)
    assert t.run(duration=0.5) >= 1 and t.failed == 0


SLOT0_ABI = [{"name": "slot0", "type": "function", "stateMutability": "view", "inputs": [],
              "outputs": [{"name": "sqrtPriceX96", "type": "uint160"}, {"name": "tick", "type": "int24"},
                          {"name": "a", "type": "uint16"}, {"name": "b", "type": "uint16"},
                          {"name": "c", "type": "uint16"}, {"name": "d", "type": "uint8"},
                          {"name": "e", "type": "bool"}]}]


# ---- no anvil outlives its owner --------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from engine.devnet import Devnet
    net = Devnet.start(("base",))
    print(json.dumps([a.proc.pid for a in net.anvils.values()]), flush=True)
    mode = sys.argv[1]
    if mode == "raise":
        with net:
            raise RuntimeError("boom")
    if mode == "exit":
        sys.exit(0)            # no stop(): the atexit hook must do it
    time.sleep(60)             # killed from outside
""")


@needs_toolchain
@pytest.mark.parametrize("mode", ["raise", "exit", "SIGKILL"])
def test_anvil_dies_with_its_owner(mode, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    proc = subprocess.Popen([PY, str(script), mode], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert pids and all(alive(p) for p in pids) or mode != "SIGKILL"
        if mode == "SIGKILL":
            proc.kill()  # no finally, no atexit: PR_SET_PDEATHSIG must do it
        proc.wait(30)
        assert wait_dead(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_toolchain
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, "down"])
def test_cli_up_stops_every_anvil_on_signal(sig, tmp_path):
    manifest = tmp_path / "devnet.json"
    proc = subprocess.Popen([PY, "-m", "engine.cli", "devnet", "up", "--chains", "arbitrum,polygon",
                             "--manifest", str(manifest)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not manifest.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "devnet up did not write its manifest"
            time.sleep(0.1)
        m = json.loads(manifest.read_text())
        pids = [c["anvil_pid"] for c in m["chains"].values()]
        assert m["pid"] == proc.pid and all(alive(p) for p in pids)
        if sig == "down":
            # the traffic generator against it first, through the same CLI
            t = subprocess.run([PY, "-m", "engine.cli", "devnet", "traffic", "--manifest", str(manifest),
                                "--rate", "20", "--big-every", "3", "--duration", "1"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert t.returncode == 0, t.stderr
            assert "swaps sent" in t.stderr and len(t.stdout.splitlines()) >= 1  # >= 1 swap, even loaded
            d = subprocess.run([PY, "-m", "engine.cli", "devnet", "down", "--manifest", str(manifest)],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert d.returncode == 0, d.stderr
        else:
            proc.send_signal(sig)
        assert proc.wait(30) == 0
        assert wait_dead(pids) == []
        assert not manifest.exists()  # it named ports that are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_input():
    from engine.devnet import main
    assert main(["up", "--chains", "arbitrum,mars"]) == 2
    assert main(["traffic", "--manifest", "/nonexistent/manifest.json"]) == 2
    assert main(["bogus"]) == 2
    assert main(["up", "--rival", "1.5"]) == 2


@needs_toolchain
def test_cached_start_equals_a_fresh_deployment(tmp_path, monkeypatch):
    """The state cache is only a shortcut: a fresh deployment gives the same chain."""
    import engine.devnet.deploy as deploy
    from engine.devnet import Devnet
    monkeypatch.setattr(deploy, "CACHE_DIR", tmp_path)
    with Devnet.start(("base",), seed=7) as fresh:
        assert fresh.how == {"base": "deployed"} and list(tmp_path.glob("base-7-*.state"))
    with Devnet.start(("base",), seed=7) as cached, Devnet.start(("base",), seed=7, cache=False) as again:
        assert cached.how == {"base": "cached"} and again.how == {"base": "deployed"}
        a, b = cached.manifest["chains"]["base"], again.manifest["chains"]["base"]
        strip = ("port", "rpc_url", "ws_url", "anvil_pid")
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
        for p in a["pools"]:
            for net in (cached, again):
                assert len(net.w3("base").eth.get_code(p["address"])) > 0
            if p["kind"] == "v2":
                pair = [load("UniswapV2Pair").contract(n.w3("base"), p["address"]) for n in (cached, again)]
                assert pair[0].functions.getReserves().call()[:2] == pair[1].functions.getReserves().call()[:2]


def test_websocket_endpoint_answers(devnet):
    """ws_url is the same anvil port speaking JSON-RPC over WebSocket (for subscriptions)."""
    import asyncio
    import websockets

    async def ask(url):
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            return json.loads(await ws.recv())["result"]

    for name, c in devnet.manifest["chains"].items():
        assert int(asyncio.run(ask(devnet.ws_url(name))), 16) == c["chain_id"]


@needs_toolchain
def test_a_taken_port_is_retried_or_reported():
    import socket
    from engine.devnet import Devnet, free_port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        # a fixed port that is taken: a clear error, and nothing left running
        with pytest.raises(RuntimeError, match=f"port {taken}"):
            Devnet.start(("base",), base_port=taken)
        # free ports: a collision is retried on another port
        import engine.devnet.anvil as d    # where Devnet.start finds free ports
        ports = iter([taken, free_port()])
        orig = d.free_port
        d.free_port = lambda: next(ports, None) or orig()
        try:
            with Devnet.start(("base",)) as net:
                assert net.anvils["base"].port != taken
                assert net.w3("base").eth.chain_id == 8453
        finally:
            d.free_port = orig
