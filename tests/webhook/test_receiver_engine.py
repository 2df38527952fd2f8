"""The receiver as a real supervised role of a real engine: Moralis's side stood in for by an
aiohttp client sending documented bodies with real signatures over 127.0.0.1, our side read
back from the real LMDB inbox and the real shared-memory hand-off ring."""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import threading
import time

import aiohttp
import pytest

from engine.chain.hooks import HookReader, INBOX_PREFIX
from engine.config import MORALIS_ROLE
from engine.core.ring import Ring
from engine.core.store import Store
from enginehelp import agent
from moralishelp import keys_of, numbered_body, payload, sign

SECRET = "engine-test-secret"
PATH = "/webhooks/moralis"
SPARE_READER = 31          # a ring cursor slot no role uses (MAX_ROLES = 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver(engine_factory, monkeypatch, shared_data):
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", SECRET)
    port = free_port()
    eng = engine_factory(roles={"polygon-specialist": agent(["polygon"])},
                         moralis={"listen": [f"127.0.0.1:{port}"], "path": PATH},
                         rings={"inbox_slots": 8192})
    eng.start()
    eng.url = f"http://127.0.0.1:{port}"
    eng.wait_for(lambda: health(eng) is not None, 30, "the receiver's /health")
    yield eng
    eng.stop()


def health(eng) -> dict | None:
    import urllib.request
    try:
        with urllib.request.urlopen(eng.url + "/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def receiver_pid(eng) -> int:
    """The receiver's pid, 0 while it is being restarted (no pid file)."""
    try:
        return int((eng.run_dir / "roles" / f"{MORALIS_ROLE}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return 0


async def send(session, url, body, sig, *, retry_until: float = 0.0) -> int:
    """One delivery as Moralis sends it; with retry_until, retried on connection errors and
    5xx (Moralis retries failed deliveries) until that monotonic deadline."""
    while True:
        try:
            async with session.post(url, data=body, headers={
                    "Content-Type": "application/json", "x-signature": sig}) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            status = 0
        if status in (0, 503) and time.monotonic() < retry_until:
            await asyncio.sleep(0.05)
            continue
        return status


def handed_on(eng) -> list[tuple]:
    """Every log key the receiver handed on, in ring order, read back through the inbox as a
    monitor would (HookReader)."""
    ring = Ring.attach(f"/syn.{eng.name}.out.{MORALIS_ROLE}")
    store = Store.open(eng.store_dir, readonly=True)
    try:
        reader = ring.reader(SPARE_READER, start="oldest")
        hooks = HookReader(store)
        keys = []
        while True:
            batch = reader.poll(1024)
            assert batch.lost == 0
            if not batch.records:
                break
            for raw in batch.records:
                rec = json.loads(bytes(raw))
                assert rec["type"] == "hook" and rec["t_origin"] > 0
                for lg in hooks.logs(rec):
                    keys.append((rec["chain"], lg["blockHash"], lg["transactionHash"],
                                 int(lg["logIndex"], 16)))
        return keys
    finally:
        ring.close()
        store.close()


def inbox_bodies(eng) -> list[bytes]:
    store = Store.open(eng.store_dir, readonly=True)
    try:
        with store.read() as r:
            return [rec["body"].encode() for _, rec in r.records("inbox", INBOX_PREFIX)]
    finally:
        store.close()


def drained(eng, accepted: int):
    def ok():
        h = health(eng)
        return h if h and h["processed"] >= h["inbox_last"] and h["inbox_last"] >= accepted else None
    return eng.wait_for(ok, 60, "every accepted delivery processed")


def test_new_user_flow_test_webhook_then_snapshot_shows_it(receiver):
    body = payload("00")
    status = asyncio.run(_one(receiver.url + PATH, body, sign(body, SECRET)))
    assert status == 200
    r = receiver.cli("snapshot", str(receiver.store_dir), "ls", "inbox")
    assert r.returncode == 0 and "moralis/1" in r.stdout and "test" in r.stdout, r.stdout


async def _one(url, body, sig):
    async with aiohttp.ClientSession() as s:
        return await send(s, url, body, sig)


def test_thousand_concurrent_mixed_deliveries(receiver):
    """1 000 deliveries from 64 concurrent senders: 700 valid (on three chains, a fifth of them
    also sent as the confirmed copy, some twice), 100 forged, 100 duplicates of valid ones, the
    rest truncated or oversize.  0 forgeries accepted, 0 valid deliveries lost, every valid log
    handed on exactly once, the server up throughout."""
    rng = random.Random(11)
    chains = ["0x89", "0xa4b1", "0x2105"]
    valid = [numbered_body(i, confirmed=False, chain_id=chains[i % 3], logs=1 + i % 3)
             for i in range(560)]
    valid += [numbered_body(i, confirmed=True, chain_id=chains[i % 3], logs=1 + i % 3)
              for i in rng.sample(range(560), 140)]           # confirmed copies, either order
    jobs = [(b, sign(b, SECRET), 200) for b in valid]
    jobs += [(b, sign(b, SECRET), 200) for b in rng.sample(valid, 100)]   # retries
    forged = []
    for i in range(100):
        b = numbered_body(10_000 + i, confirmed=False)
        sig = sign(b, SECRET + "x") if i % 2 else sign(b, SECRET)
        if not i % 2:
            b = b.replace(b'"logIndex": "0"', b'"logIndex": "9"')   # body changed after signing
        forged.append(b)
        jobs.append((b, sig, 401))
    big = b'{"pad": "' + b"x" * (5 << 20) + b'"}'
    jobs += [(big, sign(big, SECRET), 413)] * 20
    rng.shuffle(jobs)
    truncated = 80

    async def main():
        sem = asyncio.Semaphore(64)
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(60)) as s:
            async def one(job):
                async with sem:
                    return await send(s, receiver.url + PATH, job[0], job[1])

            async def cut(i):       # headers and half a body, then the sender goes away
                b = numbered_body(20_000 + i, confirmed=False)
                _, w = await asyncio.open_connection("127.0.0.1", int(receiver.url.rsplit(":", 1)[1]))
                w.write(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nx-signature: {sign(b, SECRET)}\r\n"
                        f"Content-Length: {len(b)}\r\n\r\n".encode() + b[: len(b) // 2])
                await w.drain()
                w.close()
            got = await asyncio.gather(*[one(j) for j in jobs], *[cut(i) for i in range(truncated)])
            return got[: len(jobs)]
    ages, done = [], threading.Event()

    def watch():      # the receiver's heartbeat while its HTTP thread is busy
        while not done.is_set():
            r = receiver.roles().get(MORALIS_ROLE)
            if r and r["heartbeat_age_s"] is not None:
                ages.append((r["heartbeat_age_s"], r["restarts"]))
            time.sleep(0.1)
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    end = time.monotonic() + 30
    while not ages and time.monotonic() < end:     # a first sample before the burst (a fast
        time.sleep(0.02)                           # burst once ended before the watcher began)
    n0 = len(ages)
    try:
        statuses = asyncio.run(main())
        end = time.monotonic() + 30
        while len(ages) <= n0 and time.monotonic() < end:   # and one after it
            time.sleep(0.02)
    finally:
        done.set()
        w.join(30)
    assert ages, "the receiver's heartbeat was never seen"
    print(f"\nheartbeat age during the burst: {len(ages)} samples, max "
          f"{max(a for a, _ in ages):.3f} s")
    assert ages and all(restarts == 0 for _, restarts in ages)     # never aborted or restarted
    for (body, _, want), st in zip(jobs, statuses):
        assert st == want, (st, want, body[:80])
    assert health(receiver)["status"] == "ok"              # up, store fine
    drained(receiver, len(valid) + 100)
    bodies = inbox_bodies(receiver)
    assert len(bodies) == len(valid) + 100                  # every 200 is in the inbox
    assert not set(bodies) & set(forged)                     # no forgery, no truncated body
    assert all(len(b) < 1 << 20 for b in bodies)
    want = set().union(*(keys_of(b) for b in valid))
    keys = handed_on(receiver)
    assert len(keys) == len(set(keys)), "a log was handed on twice"
    assert set(keys) == want
    h = health(receiver)
    assert h["inbox_depth"] == 0 and h["refused"]["401"] == 100 and h["refused"]["413"] == 20
    assert sum(c["logs"] for c in h["chains"].values()) == len(want)
    assert sum(c["duplicates"] for c in h["chains"].values()) > 0    # copies were dropped


def test_sigkill_during_a_burst_loses_nothing_acknowledged_repeats_nothing(receiver):
    """Eight senders deliver 600 bodies (each also as its confirmed copy) while the receiver is
    SIGKILLed twice; the supervisor restarts it and senders retry as Moralis does.  Every
    delivery that got its 200 is in the inbox and handed on, and no log is handed on twice."""
    bodies = [numbered_body(i, confirmed=c, chain_id="0xa4b1", logs=2)
              for i in range(300) for c in (False, True)]
    acked: list[bytes] = []
    kills = []

    def killer():
        for target in (150, 400):
            while len(acked) < target:
                time.sleep(0.005)
            pid = receiver_pid(receiver)
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)
            receiver.wait_for(lambda: receiver_pid(receiver) not in (0, pid) and health(receiver), 60,
                              "the receiver restarted")
    t = threading.Thread(target=killer, daemon=True)
    t.start()

    async def main():
        sem = asyncio.Semaphore(8)
        deadline = time.monotonic() + 120
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10)) as s:
            async def one(b):
                async with sem:
                    st = await send(s, receiver.url + PATH, b, sign(b, SECRET), retry_until=deadline)
                    if st == 200:
                        acked.append(b)
                    return st
            return await asyncio.gather(*[one(b) for b in bodies])
    statuses = asyncio.run(main())
    t.join(90)
    assert len(kills) == 2
    assert statuses.count(200) == len(bodies)
    h = drained(receiver, len(bodies))
    inbox = inbox_bodies(receiver)
    assert set(acked) <= set(inbox)                          # nothing acknowledged is lost
    keys = handed_on(receiver)
    assert len(keys) == len(set(keys)), "a log was handed on twice across the kills"
    assert set(keys) == set().union(*(keys_of(b) for b in bodies))
    assert h["inbox_depth"] == 0
    log = receiver.stderr()
    print("\n".join(line for line in log.splitlines() if "resumed" in line or "remembered" in line))


def test_processed_deliveries_are_trimmed_after_keep_and_nothing_else(engine_factory, monkeypatch,
                                                                      shared_data):
    """[moralis] keep = 0.3 s, rebuild 16, a 64-slot outbox: of 200 processed deliveries the
    newest 64 stay (a ring's worth), the rest go; seqs continue after the trim, and after a
    SIGKILL the restarted receiver still recognises a retry of a kept delivery."""
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", SECRET)
    port = free_port()
    eng = engine_factory(roles={"polygon-specialist": agent(["polygon"]),
                                MORALIS_ROLE: {"kind": "roles.webhook:MoralisReceiver",
                                               "subscribe": False, "options": {"rebuild": 16}}},
                         moralis={"listen": [f"127.0.0.1:{port}"], "path": PATH, "keep": 0.3},
                         rings={"inbox_slots": 64})
    eng.start()
    eng.url = f"http://127.0.0.1:{port}"
    eng.wait_for(lambda: health(eng) is not None, 30, "the receiver's /health")
    bodies = [numbered_body(i, confirmed=False, chain_id="0x89", logs=1) for i in range(210)]

    async def deliver(batch):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10)) as s:
            return [await send(s, eng.url + PATH, b, sign(b, SECRET)) for b in batch]
    try:
        assert asyncio.run(deliver(bodies[:200])) == [200] * 200
        drained(eng, 200)
        h = eng.wait_for(lambda: (lambda h: h if h and h["trimmed"] >= 136 else None)(health(eng)),
                         60, "the old deliveries trimmed")
        assert h["trimmed"] == 136
        kept = [s for s, _ in _inbox_records(eng)]
        assert kept == list(range(137, 201))
        assert asyncio.run(deliver(bodies[200:])) == [200] * 10
        drained(eng, 210)
        assert [s for s, _ in _inbox_records(eng)][-10:] == list(range(201, 211))
        pid = receiver_pid(eng)
        os.kill(pid, signal.SIGKILL)
        eng.wait_for(lambda: receiver_pid(eng) not in (0, pid) and health(eng), 60,
                     "the receiver restarted")
        dup_before = health(eng)["chains"].get("polygon", {}).get("duplicates", 0)
        assert asyncio.run(deliver([bodies[205]])) == [200]
        h = drained(eng, 211)
        assert h["chains"]["polygon"]["duplicates"] == dup_before + 1
        seqs = [s for s, _ in _inbox_records(eng)]
        assert seqs[0] >= 137 and seqs[-1] == 211       # the floor holds across the restart
    finally:
        eng.stop()


def _inbox_records(eng) -> list:
    store = Store.open(eng.store_dir, readonly=True)
    try:
        with store.read() as r:
            return list(r.records("inbox", INBOX_PREFIX))
    finally:
        store.close()
