"""Read `/metrics` as Prometheus would: over HTTP, parsed by prometheus_client's own parser."""
from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict:
    """{family name: {"type", "samples": {(sample name, frozenset(labels)): value}}}."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {"type": fam.type, "samples": {
            (s.name, frozenset(s.labels.items())): s.value for s in fam.samples}}
    return out


def value(families: dict, name: str, **labels) -> float | None:
    """One sample by its full name (`syndicate_events_total`, `..._seconds_count`) and exact
    labels, whichever family holds it."""
    key = (name, frozenset(labels.items()))
    for fam in families.values():
        if key in fam["samples"]:
            return fam["samples"][key]
    return None
