"""`/metrics` pieces on their own: histogram buckets against a brute-force count, the info
documents' declared numbers, a kind's bad declaration, the [metrics] section's checks (exit 2
with the key and line), and the listener's HTTP edges on a real socket."""
from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.control import BUCKETS, bucket_of
from engine.core.kind import InfoMetric
from engine.core.metrics import bucket_edges, cumulative, info_values
from engine.core.metrics_http import MetricsServer
from metricshelp import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("per_octave", [1, 2, 4])
def test_cumulative_buckets_count_exactly_what_lies_below_each_edge(per_octave):
    rng = random.Random(per_octave)
    values = [int(10 ** rng.uniform(0, 10.5)) for _ in range(5000)]   # 1 ns .. 30 s
    counts = [0] * BUCKETS
    for v in values:
        counts[bucket_of(v)] += 1
    got = cumulative(counts, bucket_edges(per_octave))
    assert got[-1] == ("+Inf", len(values))
    assert len(got) - 1 == len(range(40, BUCKETS, 4 // per_octave))
    previous = 0
    for le, n in got[:-1]:
        edge_ns = round(float(le) * 1e9)
        assert n == sum(1 for v in values if v < edge_ns), le
        assert n >= previous
        previous = n


def test_info_values_take_each_key_of_a_star_as_a_label():
    doc = {"chains": {"base": {"events": 7, "follower": {"head": 12}},
                      "polygon": {"events": 2.5, "follower": {}}},
           "flag": True, "text": "x", "list": [1, 2]}
    assert sorted(info_values(doc, "chains.*.events")) == [(("base",), 7.0), (("polygon",), 2.5)]
    assert info_values(doc, "chains.*.follower.head") == [(("base",), 12.0)]
    assert info_values(doc, "flag") == [((), 1.0)]
    assert info_values(doc, "text") == [] and info_values(doc, "list") == []
    assert info_values(doc, "missing.*") == [] and info_values(None, "x") == []


def test_a_declaration_with_a_label_per_star_or_nothing():
    with pytest.raises(ValueError, match="one label per"):
        InfoMetric("x", "counter", "doc", "chains.*.events")
    with pytest.raises(ValueError, match="counter or gauge"):
        InfoMetric("x", "histogram", "doc", "a")


def _check(tmp_path, metrics: str) -> subprocess.CompletedProcess:
    p = tmp_path / "engine.toml"
    p.write_text(f'[engine]\nname = "m"\nstate_dir = "{tmp_path}/state"\n\n[metrics]\n{metrics}\n\n'
                 '[roles.a]\nkind = "roles.agents:Agent"\nchains = ["arbitrum"]\n')
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", "--check", "-c", str(p)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("line, why", [
    ('listen = "9464"', 'host:port'), ('listen = "127.0.0.1:0"', "port in 1..65535"),
    ('listen = 9464', "must be str"), ('buckets_per_octave = 3', "must be one of"),
    ('port = 1', "unknown key")])
def test_bad_metrics_section_is_exit_2_with_key_and_line(tmp_path, line, why):
    r = _check(tmp_path, line)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "engine.toml:6: metrics." in r.stderr and why in r.stderr, r.stderr


def test_an_address_in_use_stops_the_start_with_exit_2(engine_factory):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        e = engine_factory(metrics={"listen": f"127.0.0.1:{port}"})
        e.start(wait=False)
        assert e.wait_exit(60) == 2
    assert "metrics.listen: cannot listen on" in e.stderr() and "in use" in e.stderr()
    assert e.segments() == []


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_the_listener_answers_only_get_metrics_and_outlives_bad_clients():
    port = free_port()
    errors = []
    srv = MetricsServer(f"127.0.0.1:{port}", lambda accept: (b"m 1\n", "text/plain"),
                        timeout=1.0, on_error=errors.append)
    import select
    import threading
    import time
    stop = threading.Event()

    def loop():   # the supervisor's loop, as far as the server can tell
        while not stop.is_set():
            r, w, _ = select.select(srv.rfds(), srv.wfds(), [], 0.05)
            srv.step(r, w)
    t = threading.Thread(target=loop)
    t.start()
    try:
        silent = socket.create_connection(("127.0.0.1", port))   # says nothing: dropped at 1 s
        assert _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"\r\n\r\nm 1\n")
        assert b" 404 " in _raw(port, b"GET / HTTP/1.1\r\n\r\n")
        assert b" 405 " in _raw(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert b" 400 " in _raw(port, b"hello\r\n\r\n")
        assert b" 431 " in _raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
        head = _raw(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert b" 200 " in head and head.endswith(b"\r\n\r\n")
        silent.settimeout(5)
        t0 = time.monotonic()
        assert silent.recv(10) == b"" and time.monotonic() - t0 < 4.5
        silent.close()
    finally:
        stop.set()
        t.join()
        srv.close()
    assert errors == [] and srv.served == 2
