"""The baseline of `syndicate bench detect`: what a user would write with web3.py, in its own process.

    AsyncWeb3(WebSocketProvider(ws_url))
      await w3.eth.subscribe("logs", {"address": pools, "topics": [[Sync, V2 Swap, V3 Swap]]})
      async for msg in w3.socket.process_subscriptions():
          contract.events.<Event>().process_log(msg["result"])      ─► t_decoded

The clock.  web3 reads the socket inside `websockets`' asyncio connection, which we cannot
replace; we observe it instead: the connection object's `data_received` (called by asyncio's
transport right after its `recv`, as our client stamps `t_origin` right after its own) is
wrapped on the instance to note CLOCK_MONOTONIC, and its `process_event` to keep each data
frame with the stamp of the `recv` that completed it (one list append each: the only cost added
to web3's path).  The frames are parsed only after the run, to pair each (tx, log index) with
its stamp.  So the figure is "bytes received by the websocket library → decoded event in
hand": web3's JSON parsing, its subscription queue and result formatters, and the ABI decoding.

The parent talks to this process through a `multiprocessing` pipe: it gets "ready" once the
subscription is live, sends "stop" when its own side has everything; this side then waits until
no message has come for `idle` seconds and sends back its samples.
"""
from __future__ import annotations

import asyncio
import os
import time

import orjson

from engine.arb import events as ev

TOPICS = [ev.SYNC_TOPIC, ev.V2_SWAP_TOPIC, ev.V3_SWAP_TOPIC]


def main(conn, ws_url: str, pools: list[str], sched: tuple[int, int] | None,
         idle: float = 1.0) -> None:
    """The child's entry point: `sched` is (policy, priority) to run at (the monitor's), or None."""
    if sched is not None:
        try:
            os.sched_setscheduler(0, sched[0], os.sched_param(sched[1]))
        except OSError:
            pass          # not permitted here: the parent reports the policy each side ran at
    try:
        result = asyncio.run(_run(conn, ws_url, pools, idle))
    except Exception as e:   # the parent reports it; never a hang
        result = {"error": f"{type(e).__name__}: {e}"}
    result["sched"] = [os.sched_getscheduler(0), os.sched_getparam(0).sched_priority]
    conn.send(result)
    conn.close()


async def _run(conn, ws_url: str, pools: list[str], idle: float) -> dict:
    from web3 import AsyncWeb3, WebSocketProvider
    from websockets.frames import Opcode

    from engine.chain.contracts import load

    data_ops = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
    frames: list[tuple[int, bool, bytes]] = []
    samples: list[tuple[int, bytes, int, str]] = []
    loop = asyncio.get_running_loop()
    async with AsyncWeb3(WebSocketProvider(ws_url, max_connection_retries=1)) as w3:
        ws = w3.provider._ws          # websockets' asyncio ClientConnection
        last_recv = [0]
        orig_data, orig_event = ws.data_received, ws.process_event

        def data_received(data):
            last_recv[0] = time.monotonic_ns()
            orig_data(data)

        def process_event(frame):
            if frame.opcode in data_ops:
                frames.append((last_recv[0], frame.fin, frame.data))
            orig_event(frame)

        ws.data_received, ws.process_event = data_received, process_event
        pair = w3.eth.contract(abi=load("UniswapV2Pair").abi)
        pool = w3.eth.contract(abi=load("UniswapV3Pool").abi)
        decoders = {bytes.fromhex(ev.SYNC_TOPIC[2:]): pair.events.Sync(),
                    bytes.fromhex(ev.V2_SWAP_TOPIC[2:]): pair.events.Swap(),
                    bytes.fromhex(ev.V3_SWAP_TOPIC[2:]): pool.events.Swap()}
        await w3.eth.subscribe("logs", {"address": [w3.to_checksum_address(p) for p in pools],
                                        "topics": [TOPICS]})
        last = [time.monotonic()]

        async def consume():
            async for msg in w3.socket.process_subscriptions():
                log = msg["result"]
                e = decoders[bytes(log["topics"][0])].process_log(log)
                t = time.monotonic_ns()
                samples.append((t, bytes(e["transactionHash"]), e["logIndex"], e["event"]))
                last[0] = time.monotonic()

        task = asyncio.create_task(consume())
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), lambda: conn.recv() == "stop" and stop.set())
        conn.send("ready")
        await stop.wait()
        loop.remove_reader(conn.fileno())
        while time.monotonic() - last[0] < idle and not task.done():
            await asyncio.sleep(0.1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    return {"samples": _pair(frames, samples), "frames": len(frames)}


def _pair(frames: list, samples: list) -> list[tuple[str, int, str, int, int]]:
    """(tx, log index, event, t_recv, t_decoded) for each decoded event, its t_recv the stamp
    of the frame that completed its message."""
    stamp: dict[tuple[str, int], int] = {}
    parts: list[bytes] = []
    for t, fin, data in frames:
        parts.append(data)
        if not fin:
            continue
        raw, parts = b"".join(parts), []
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        r = (m.get("params") or {}).get("result") if isinstance(m, dict) else None
        if isinstance(r, dict) and "transactionHash" in r:
            stamp.setdefault((r["transactionHash"].lower(), int(r["logIndex"], 16)), t)
    out = []
    for t_dec, tx, index, name in samples:
        key = ("0x" + tx.hex(), index)
        if key in stamp:
            out.append((key[0], index, name, stamp[key], t_dec))
    return out
