"""engine/chain/moralis.py on Moralis's documented bodies (../shared/data/moralis): signatures,
shapes, the test webhook, and the logs as eth_getLogs would return them."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.chain import moralis
from engine.chain.moralis import BodyError
from moralishelp import PAYLOADS, all_payloads, payload, polygon_body, polygon_logs, sign

SECRET = "streams-secret-3f9a"


@pytest.fixture(autouse=True)
def _data(shared_data):
    """Every test here reads the real bodies."""


def test_every_documented_body_parses():
    names = [p.name for p in all_payloads()]
    assert len(names) >= 7
    for p in all_payloads():
        d = moralis.parse(p.read_bytes())
        assert d.test == p.name.startswith("00_"), p.name
        if not d.test:
            assert d.chain_id in (0x1, 0x5, 0x13881) and d.chain is None   # not our chains
            assert d.block_number > 0 and d.block_hash.startswith("0x")


def test_test_webhook_is_recognised():
    d = moralis.parse(payload("00"))
    assert d.test and d.logs == () and d.chain is None and d.confirmed is True


def test_the_markdown_escaped_test_webhook_is_not_json():
    raw = (PAYLOADS / "00_mandatory_test_webhook.VERBATIM_markdown_escaped.txt").read_bytes()
    with pytest.raises(BodyError) as e:
        moralis.parse(raw)
    assert e.value.where == "body" and "not JSON" in str(e.value)


def test_sync_log_becomes_an_eth_getlogs_log():
    d = moralis.parse(payload("05"))
    assert d.retries == 1 and d.confirmed is False and d.block_number == 15984246
    [lg] = d.logs
    assert lg == {
        "address": "0x4cd36d6f32586177e36179a810595a33163a20bf",
        "topics": ["0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"],
        "data": "0x00000000000000000000000000000000000000000000944ad388817e590ab607"
                "0000000000000000000000000000000000000000000000000000008a602de18e",
        "blockNumber": hex(15984246),
        "blockHash": "0x7f8d8285b572a60f6a14d5f1dcbd40e487ccffd9ec78f8dfbccb49aa191fbb95",
        "transactionHash": "0xf1682fa49b83689093b467ac6937785102895fc3ba418624c28d04f9af6e5e2b",
        "logIndex": hex(320), "removed": False}
    r0, r1 = int(lg["data"][2:66], 16), int(lg["data"][66:], 16)
    assert (r0, r1) == (700290541101480493626887, 594319106446)   # SOURCES.md's reserves
    assert moralis.log_key("ethereum", lg) == ("ethereum", lg["blockHash"], lg["transactionHash"], 320)


def test_polygon_logs_round_trip_to_what_the_node_returned():
    """Real Polygon logs in a Moralis body come out as the node's own logs."""
    d = moralis.parse(polygon_body(confirmed=True))
    assert d.chain == "polygon" and d.chain_id == 137
    src = polygon_logs()
    assert len(d.logs) == len(src)
    for got, want in zip(d.logs, src):
        assert got["topics"] == want["topics"] and got["data"] == want["data"]
        assert got["address"] == want["address"] and int(got["logIndex"], 16) == want["log_index"]
        assert got["blockHash"] == want["block_hash"]
        assert int(got["blockNumber"], 16) == want["block_number"]


@pytest.mark.parametrize("chain_id,name", [("0xa4b1", "arbitrum"), ("0x2105", "base"),
                                           ("0x89", "polygon"), ("0x1", None), ("0xA4B1", "arbitrum")])
def test_chain_names(chain_id, name):
    assert moralis.parse(polygon_body(False, chain_id=chain_id)).chain == name


# ── signatures ─────────────────────────────────────────────────────────────────────────────

def test_independent_signature_is_accepted_with_or_without_0x():
    for p in all_payloads():
        body = p.read_bytes()
        sig = sign(body, SECRET)
        assert moralis.signature(body, SECRET) == sig
        assert moralis.signature_ok(body, SECRET, sig)
        assert moralis.signature_ok(body, SECRET, sig[2:])
        assert moralis.signature_ok(body, SECRET, sig.upper().replace("0X", "0x"))


def test_a_flipped_byte_anywhere_is_refused():
    body = payload("05")
    sig = sign(body, SECRET)
    for i in range(0, len(body), 37):
        forged = bytearray(body)
        forged[i] ^= 0x01
        assert not moralis.signature_ok(bytes(forged), SECRET, sig)
    for i in range(2, len(sig)):
        c = sig[i]
        bad = sig[:i] + ("0" if c != "0" else "1") + sig[i + 1:]
        assert not moralis.signature_ok(body, SECRET, bad)
    for i in range(len(SECRET)):
        wrong = SECRET[:i] + chr(ord(SECRET[i]) ^ 1) + SECRET[i + 1:]
        assert not moralis.signature_ok(body, wrong, sig)


@pytest.mark.parametrize("header", [None, "", "0x", "zz" * 32, "0x" + "ab" * 31, "0x" + "ab" * 33,
                                    "é" * 64, " 0x" + "00" * 32])
def test_malformed_signature_headers_are_refused(header):
    assert not moralis.signature_ok(payload("05"), SECRET, header)


def test_no_secret_accepts_nothing():
    body = payload("05")
    assert not moralis.signature_ok(body, "", sign(body, ""))


# ── shapes ─────────────────────────────────────────────────────────────────────────────────

def _mutated(path: list, value) -> bytes:
    doc = json.loads(polygon_body(False))
    obj = doc
    for k in path[:-1]:
        obj = obj[k]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("path,value,where,needle", [
    (["confirmed"], "yes", "confirmed", "must be true or false, not a string"),
    (["chainId"], KeyError, "chainId", "missing"),
    (["chainId"], "137", "chainId", "hex chain id"),
    (["retries"], 1.5, "retries", "must be an integer"),
    (["retries"], -1, "retries", ">= 0"),
    (["block"], [], "block", "must be an object, not a list"),
    (["block", "number"], 5, "block.number", "must be a string, not a number"),
    (["block", "number"], "0x5", "block.number", "decimal string"),
    (["block", "hash"], "0x12", "block.hash", "32-byte"),
    (["logs"], {}, "logs", "must be a list"),
    (["logs", 2], "x", "logs[2]", "must be an object"),
    (["logs", 1, "address"], "0x12", "logs[1].address", "20-byte"),
    (["logs", 0, "logIndex"], 3, "logs[0].logIndex", "must be a string"),
    (["logs", 3, "data"], "0x123", "logs[3].data", "even number"),
    (["logs", 0, "topic0"], None, "logs[0].topic1", "topic0 is null"),
    (["logs", 0, "topic2"], 7, "logs[0].topic2", "string or null"),
    (["logs", 0, "transactionHash"], KeyError, "logs[0].transactionHash", "missing"),
])
def test_bad_fields_are_named(path, value, where, needle):
    with pytest.raises(BodyError) as e:
        moralis.parse(_mutated(path, value))
    assert e.value.where == where and needle in str(e.value), str(e.value)


def test_duplicate_log_in_one_body_is_refused():
    logs = polygon_logs()
    with pytest.raises(BodyError, match=r"logs\[1\]: same transactionHash and logIndex as logs\[0\]"):
        moralis.parse(polygon_body(False, [logs[0], logs[0]]))


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b"42", b'"x"', b"{", b"\xff\xfe"])
def test_not_an_object(raw):
    with pytest.raises(BodyError) as e:
        moralis.parse(raw)
    assert e.value.where == "body"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["confirmed", "chainId", "streamId", "tag", "retries",
                                        "block", "logs", "abi", "txs"]), json_values))
def test_arbitrary_objects_are_a_delivery_or_a_body_error(doc):
    try:
        moralis.parse(json.dumps(doc).encode())
    except BodyError as e:
        assert e.where and e.what
    # anything else (KeyError, TypeError, ValueError...) fails the test


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_real_body_with_one_field_replaced(data):
    doc = json.loads(polygon_body(True))
    log = data.draw(st.integers(0, len(doc["logs"]) - 1))
    key = data.draw(st.sampled_from(["logIndex", "transactionHash", "address", "data",
                                     "topic0", "topic1", "topic3"]))
    doc["logs"][log][key] = data.draw(json_values)
    try:
        d = moralis.parse(json.dumps(doc).encode())
    except BodyError as e:
        assert e.where.startswith(f"logs[{log}]"), e
    else:
        assert len(d.logs) == len(doc["logs"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    try:
        moralis.parse(raw)
    except BodyError:
        pass
