"""engine/chain/hooks.py: the dedup window, the hand-off records and reading them back."""
from __future__ import annotations

import orjson
import pytest

from engine.chain import hooks, moralis
from engine.core.ring import Ring
from engine.core.store import Store
from moralishelp import numbered_body, polygon_body


def test_seen_logs_forgets_the_oldest_beyond_capacity():
    s = hooks.SeenLogs(capacity=3)
    keys = [("base", "0xb", f"0x{i}", i) for i in range(4)]
    assert all(s.add(k) for k in keys)
    assert len(s) == 3 and keys[0] not in s and keys[3] in s
    assert not s.add(keys[3]) and s.add(keys[0])


def test_confirmed_copy_adds_nothing_either_order(shared_data):
    unconfirmed, confirmed = (moralis.parse(polygon_body(c)) for c in (False, True))
    for first, second in ((unconfirmed, confirmed), (confirmed, unconfirmed)):
        s = hooks.SeenLogs()
        assert s.new_logs(first) == list(range(8))
        assert s.new_logs(second) == []


def test_many_new_logs_split_into_records_that_fit_a_slot(shared_data):
    d = moralis.parse(numbered_body(7, confirmed=False, chain_id="0x2105", logs=300))
    recs = hooks.handoff_records(12, d, list(range(300)), t_origin=99)
    assert len(recs) > 1 and [r["part"] for r in recs] == list(range(len(recs)))
    assert all(r["parts"] == len(recs) and r["inbox"] == 12 and r["chain"] == "base" for r in recs)
    assert sum((r["logs"] for r in recs), []) == list(range(300))
    for r in recs:    # with the publisher's t_written, each fits the default 512-byte slot
        assert len(orjson.dumps({**r, "t_written": 2**63 - 1})) <= 512 - 16


def test_last_handoff_and_hook_reader(tmp_path, unique_name, shared_data):
    ring = Ring.create(f"/syn.{unique_name}.hooks", slots=8, slot_size=512)
    store = Store.open(tmp_path / "lmdb", map_size=1 << 20)
    try:
        assert hooks.last_handoff(ring) is None
        body = polygon_body(False)
        d = moralis.parse(body)
        seq = store.append("inbox", hooks.INBOX_PREFIX, hooks.inbox_record(d, body, 5), durable=True)
        recs = hooks.handoff_records(seq, d, [1, 3], t_origin=5)
        ring.publish_many([orjson.dumps(r) for r in recs])
        ring.publish(b"not json")               # skipped when looking back
        assert hooks.last_handoff(ring) == (seq, 0, 1)
        assert hooks.hook_logs(store, recs[0]) == [d.logs[1], d.logs[3]]
        assert hooks.HookReader(store).logs({**recs[0], "inbox": seq + 5}) == []
    finally:
        store.close()
        ring.close()
        Ring.unlink(f"/syn.{unique_name}.hooks")


@pytest.mark.parametrize("n", [0, 1])
def test_no_new_logs_no_records(shared_data, n):
    d = moralis.parse(polygon_body(False))
    assert len(hooks.handoff_records(1, d, list(range(n)), 0)) == n
