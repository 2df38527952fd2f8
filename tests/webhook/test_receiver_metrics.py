"""`/metrics` of a real engine (a synthetic monitor, an agent, the Moralis receiver): fetched
over HTTP, parsed by prometheus_client's own parser, and its numbers agree with
`syndicate status --json` read just before and just after; no role holds its socket; it is
gone with the engine."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import aiohttp

from engine.config import MORALIS_ROLE
from enginehelp import agent
from metricshelp import free_port, scrape, value
from moralishelp import numbered_body, sign
from test_receiver_engine import PATH, SECRET, health, send

COUNTERS = ("events", "switches", "restarts", "decisions", "interrupts", "checkpoints")


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:port (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and cols[3] == "0A":
                return f"socket:[{cols[9]}]"
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_metrics_agree_with_status(engine_factory, monkeypatch, shared_data):
    monkeypatch.setenv("MORALIS_STREAMS_SECRET", SECRET)
    hook_port, port = free_port(), free_port()
    roles = {"monitor-arbitrum": {"kind": "roles.monitor:SyntheticSource",
                                  "chains": ["arbitrum"], "options": {"rate": 20.0}},
             "arbitrum-spotter": agent(["arbitrum"])}
    e = engine_factory(roles=roles, moralis={"listen": [f"127.0.0.1:{hook_port}"], "path": PATH},
                       metrics={"listen": f"127.0.0.1:{port}"})
    e.start()
    e.url = f"http://127.0.0.1:{hook_port}"
    e.wait_for(lambda: health(e) is not None, 30, "the receiver's /health")
    url = f"http://127.0.0.1:{port}/metrics"

    bodies = [numbered_body(i, confirmed=False, chain_id=("0x89", "0x2105")[i % 2])
              for i in range(5)]

    async def deliver():
        async with aiohttp.ClientSession() as s:
            return [await send(s, e.url + PATH, b, sign(b, SECRET)) for b in bodies]
    assert asyncio.run(deliver()) == [200] * 5
    # one restart: the agent killed
    os.kill(e.roles()["arbitrum-spotter"]["pid"], signal.SIGKILL)
    e.wait_for(lambda: e.roles()["arbitrum-spotter"]["restarts"] == 1
               and e.roles()["arbitrum-spotter"]["alive"], 30, "the agent restarted")
    e.wait_for(lambda: (e.roles()[MORALIS_ROLE]["info"] or {}).get("accepted") == 5, 30,
               "the receiver's info counting 5 deliveries")
    e.wait_for(lambda: e.roles()["arbitrum-spotter"]["switches"] > 3, 30, "switches")

    before = e.roles()
    fams = scrape(url)
    after = e.roles()
    for role in before:
        for c in COUNTERS:
            got = value(fams, f"syndicate_{c}_total", role=role)
            assert before[role][c] <= got <= after[role][c], (role, c)
        for phase in ("switch", "save", "decide"):
            n = value(fams, f"syndicate_{phase}_seconds_count", role=role)
            if after[role]["latency_us"][phase]["n"] == 0:     # never observed: no series
                assert n is None, (role, phase)
                continue
            assert before[role]["latency_us"][phase]["n"] <= n <= after[role]["latency_us"][phase]["n"]
            inf = value(fams, f"syndicate_{phase}_seconds_bucket", role=role, le="+Inf")
            assert inf == n
        assert value(fams, "syndicate_role_up", role=role) == 1.0
        assert value(fams, "syndicate_role_state", role=role, state=after[role]["state"]) in (0, 1)
    assert fams["syndicate_switch_seconds"]["type"] == "histogram"
    assert fams["syndicate_events"]["type"] == "counter"
    assert value(fams, "syndicate_restarts_total", role="arbitrum-spotter") == 1
    # the switch histogram: cumulative, in seconds, its mean inside its own buckets
    spot = sorted(((float(dict(k[1])["le"]), v) for k, v in
                   fams["syndicate_switch_seconds"]["samples"].items()
                   if k[0].endswith("_bucket") and dict(k[1])["role"] == "arbitrum-spotter"))
    assert all(a[1] <= b[1] for a, b in zip(spot, spot[1:]))
    n = value(fams, "syndicate_switch_seconds_count", role="arbitrum-spotter")
    mean = value(fams, "syndicate_switch_seconds_sum", role="arbitrum-spotter") / n
    assert 1e-6 < mean < 1.0
    # the receiver's info, through its kind's declaration
    info = after[MORALIS_ROLE]["info"]
    for chain, want in (("polygon", 3), ("base", 2)):
        assert info["chains"][chain]["deliveries"] == want
        assert value(fams, "syndicate_webhook_deliveries_total", role=MORALIS_ROLE,
                     chain=chain) == want
        assert value(fams, "syndicate_webhook_logs_total", role=MORALIS_ROLE,
                     chain=chain) == info["chains"][chain]["logs"]
    assert value(fams, "syndicate_webhook_inbox_depth", role=MORALIS_ROLE) == 0
    assert value(fams, "syndicate_webhook_inbox_fsyncs_total", role=MORALIS_ROLE) \
        == info["inbox_fsync"]["fsyncs"] >= 1
    assert value(fams, "syndicate_webhook_inbox_fsync_p99_seconds", role=MORALIS_ROLE) \
        == info["inbox_fsync"]["p99_s"] > 0

    # the listening socket is the supervisor's alone: no role (restarted or not) holds it
    listening = _listening_inode(port)
    assert listening in _socket_inodes(e.proc.pid)
    for role, row in e.roles().items():
        assert listening not in _socket_inodes(row["pid"]), role
    # `syndicate check` on the running engine: its listeners are in use, by this engine
    r = e.cli("check", "-c", str(e.path), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {x["check"]: x for x in json.loads(r.stdout)["checks"]}
    assert rows["moralis listen"]["detail"] == "in use by this engine's webhook receiver (running)"
    assert rows["metrics listen"]["detail"] == "in use by this engine's /metrics server (running)"
    assert e.stop() == 0
    with socket.socket() as s:      # nothing listens there any more: a new engine can bind it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # (our closes leave TIME_WAIT)
        s.bind(("127.0.0.1", port))
        s.listen(1)
    assert e.segments() == []
