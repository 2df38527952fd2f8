"""The LMDB store and checkpoints, on real LMDB files with real processes, signals and locks."""
from __future__ import annotations

import fcntl
import os
import random
import signal
import struct
import time

import lmdb
import orjson
import pytest
from lmdb.verify import verify

from engine.core.checkpoint import Checkpointer
from engine.core.store import (SCHEMA_VERSION, WRITER_LOCK, ReadOnlyStore, Store, StoreError,
                               WritableStore)

ROLE = "arbitrum-spotter"


# ── helpers: children are real forked processes; a failure shows as their exit code ─────────

def fork(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn(*args) or 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def reap(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish within {timeout}s")


@pytest.fixture
def children():
    pids = []
    yield pids
    for pid in pids:   # every exit path: no child outlives its test
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def set_schema(path, version) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", orjson.dumps(version), db=meta)
    env.close()


# ── basics ───────────────────────────────────────────────────────────────────────────────────

def test_checkpoints_discoveries_events_round_trip_and_survive_reopen(tmp_path):
    path = tmp_path / "state"
    with Store.open(path, checkpoint_history=3) as store:
        assert store.load_checkpoint(ROLE) is None
        for i in range(1, 6):
            assert store.save_checkpoint(ROLE, {"scan": {"block": i}, "learn": [i, i]}) == i
        store.save_checkpoint("base-analyst", {"t": {}})
        for i in range(10):
            store.append_discovery(ROLE, {"pool": f"0x{i:02x}"})
        store.log_event("restart", role=ROLE, reason="hard memory limit")
        assert store.append("inbox", "moralis", {"delivery": 1}, durable=True) == 1
        store.flush()
        cp = store.load_checkpoint(ROLE)
        assert cp["seq"] == 5 and cp["states"] == {"scan": {"block": 5}, "learn": [5, 5]}
        with store.read() as r:
            assert [k for k, _ in r.items("tasks", b"arbitrum-spotter\x00")] == [
                b"arbitrum-spotter\x00" + i.to_bytes(8, "big") for i in (3, 4, 5)]  # bounded history
            assert r.prefixes("tasks") == ["arbitrum-spotter", "base-analyst"]
            assert [(s, v["pool"]) for s, v in r.records("discoveries", ROLE)][:2] == [(1, "0x00"), (2, "0x01")]
            (_, ev), = list(r.items("events"))
            assert orjson.loads(ev)["kind"] == "restart"
    with Store.open(path) as store:   # sequences continue after a restart
        assert store.save_checkpoint(ROLE, {"scan": {"block": 6}}) == 6
        store.append_discovery(ROLE, {"pool": "0xff"})
        store.flush()
        with store.read() as r:
            assert r.last_seq("discoveries", ROLE) == 11


def test_bad_input_is_refused_with_the_path_or_what(tmp_path):
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(StoreError, match="not JSON-serialisable"):
            store.save_checkpoint(ROLE, {"t": {1, 2}})
        with pytest.raises(StoreError, match="states must be a dict"):
            store.save_checkpoint(ROLE, [1])
        with pytest.raises(StoreError, match="bad key prefix"):
            store.append_discovery("a/b", {})
        with pytest.raises(StoreError, match="looks like a secret"):
            store.log_event("boot", private_key="0xabc")
        with pytest.raises(StoreError, match="unknown database"):
            store.append("nope", ROLE, {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        Store.open(tmp_path / "file")
    with pytest.raises(StoreError, match="durability"):
        Store.open(tmp_path / "s", durability="sometimes")
    with pytest.raises(StoreError, match="no such directory"):
        Store.open(tmp_path / "missing", readonly=True)


def test_schema_newer_than_the_code_is_an_error_naming_path_and_versions(tmp_path):
    path = tmp_path / "s"
    Store.open(path).close()
    set_schema(path, SCHEMA_VERSION + 98)
    for readonly in (False, True):
        with pytest.raises(StoreError) as e:
            Store.open(path, readonly=readonly)
        assert str(path) in str(e.value) and f"{SCHEMA_VERSION + 98}" in str(e.value)
        assert "newer" in str(e.value)


def test_schema_older_without_a_migration_is_an_error(tmp_path):
    path = tmp_path / "s"
    Store.open(path).close()
    set_schema(path, 0)
    with pytest.raises(StoreError, match="no migration"):
        Store.open(path)


def test_foreign_lmdb_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "foreign"
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="foreign"):
            Store.open(path, readonly=readonly)
    env = lmdb.open(str(path), readonly=True)
    with env.begin() as txn:
        assert list(txn.cursor()) == [(b"hello", b"world")]
    env.close()


def test_read_only_and_writable_stores_are_separate_types(tmp_path):
    path = tmp_path / "s"
    with Store.open(path) as store:
        assert type(store) is WritableStore and not store.readonly
        store.save_checkpoint(ROLE, {"t": 1})
    for open_ in (ReadOnlyStore.open, lambda p: Store.open(p, readonly=True)):
        with open_(path) as r:     # one handle per environment and process: py-lmdb's rule
            assert type(r) is ReadOnlyStore and r.readonly
            for write in ("save_checkpoint", "append_discovery", "append", "log_event",
                          "write", "flush", "reader_check"):
                assert not hasattr(r, write), write
            assert r.load_checkpoint(ROLE)["states"] == {"t": 1}
            with pytest.raises(StoreError, match="needs a writable store"):
                Checkpointer(r, ROLE)


def test_a_job_joins_only_while_the_writer_has_not_started_it(tmp_path):
    with Store.open(tmp_path / "s") as store:
        job = store.write([store.checkpoint_op(ROLE, {"v": 1})])   # to the writer thread
        assert job.result(10) == [1] and not job.inline
        assert store.join_queued(job, [store.checkpoint_op(ROLE, {"v": 2})]) is False
        assert len(job.ops) == 1 and store.load_checkpoint(ROLE)["states"] == {"v": 1}
        inline = store.write([store.checkpoint_op(ROLE, {"v": 3})], inline=True)
        assert inline.done() and inline.inline and inline.results == [2]   # nobody held the lock


# ── crash safety ─────────────────────────────────────────────────────────────────────────────

def _kill_target(path, wfd, seed) -> int:
    """A role-like writer: discoveries numbered by their seq, a checkpoint counting rounds;
    after every commit it reports (last committed discovery, last committed count)."""
    store = Store.open(path, discovery_flush_s=0.005)
    cp = Checkpointer(store, ROLE)
    last = cp.load()
    count = last["states"]["counter"]["count"] if last else 0
    with store.read() as r:
        n = r.last_seq("discoveries", ROLE)
    rng = random.Random(seed)
    committed = count
    while True:
        for _ in range(rng.randint(1, 30)):
            n += 1
            store.append_discovery(ROLE, {"n": n, "pad": "x" * rng.randint(0, 300)})
        count += 1
        if rng.random() < 0.6:
            if not cp.save({"counter": {"count": count, "n": n}}, 300e-6):
                assert cp.flush(10)
            committed = count
        else:
            assert store.flush(10)
        os.write(wfd, struct.pack("<QQ", n, committed))


def test_sigkill_at_random_moments_loses_nothing_committed(tmp_path, children):
    path = str(tmp_path / "s")
    rng = random.Random(4)
    prev_n = prev_seq = 0
    kills = 25
    for round_ in range(kills):
        r, w = os.pipe()
        pid = fork(_kill_target, path, w, round_)
        children.append(pid)
        os.close(w)
        time.sleep(rng.uniform(0.01, 0.09))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        reports = [struct.unpack_from("<QQ", data, i) for i in range(0, len(data) - 15, 16)]
        reported_n, reported_count = reports[-1] if reports else (prev_n, 0)
        with Store.open(path, readonly=True) as store, store.read() as rd:
            seqs = [(s, rec["n"]) for s, rec in rd.records("discoveries", ROLE)]
            cp = rd.last("tasks", ROLE)
        total = len(seqs)
        assert [s for s, _ in seqs] == list(range(1, total + 1)), "a gap or a repeat"
        assert all(s == n for s, n in seqs), "a record under another record's sequence"
        assert total >= reported_n, f"round {round_}: {reported_n} reported committed, {total} found"
        assert total >= prev_n, "the discovery sequence went backwards"
        if reported_count:
            assert cp["states"]["counter"]["count"] >= reported_count
        if cp:
            assert cp["seq"] >= prev_seq, "the checkpoint sequence went backwards"
            assert cp["states"]["counter"]["n"] <= total, "a checkpoint without its discoveries"
            prev_seq = cp["seq"]
        prev_n = total
    assert prev_n > 0 and prev_seq > 0
    assert verify(path) == []   # every page sound after 25 kills


def _hold_writer_lock(path, ready_w, release_r) -> int:
    """Another role in the middle of a long commit: our writer lock, then LMDB's."""
    fd = os.open(os.path.join(path, WRITER_LOCK), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    env = lmdb.open(path, max_dbs=16)
    txn = env.begin(write=True)
    os.write(ready_w, b"r")
    os.read(release_r, 1)
    txn.commit()
    env.close()
    return 0


def test_checkpoint_goes_on_late_when_another_process_holds_the_lock(tmp_path, children):
    path = str(tmp_path / "s")
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    # Opened first: opening takes the writer lock once (it creates or checks the databases).
    with Store.open(path) as store:
        children.append(pid := fork(_hold_writer_lock, path, ready_w, release_r))
        os.read(ready_r, 1)
        cp = Checkpointer(store, ROLE)
        results = [cp.save({"t": {"v": v}}, 300e-6) for v in range(3)]
        store.append_discovery(ROLE, {"during": "hold"})
        assert results == [False, False, False]    # the holder is still holding: none could commit
        stats = cp.statistics()
        assert stats.late == 3 and stats.superseded >= 1 and stats.in_budget == 0
        assert store.load_checkpoint(ROLE) is None
        os.write(release_w, b"x")
        assert reap(pid) == 0
        assert cp.flush(timeout=10)
        assert store.load_checkpoint(ROLE)["states"] == {"t": {"v": 2}}   # the newest state won
        stats = cp.statistics()
        assert stats.late_committed >= 1 and stats.failures == 0
        assert cp.save({"t": {"v": 3}}, 5.0) is True     # lock free again: commits in budget
        store.flush()
        with store.read() as r:
            assert r.last_seq("discoveries", ROLE) == 1


def test_a_staged_state_commit_is_inline_or_not_at_all(tmp_path, children):
    """queue=False (the loop's commit of a switch's staged state): with the lock held by
    another process nothing is queued for the writer thread; once free it commits inline."""
    path = str(tmp_path / "s")
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    with Store.open(path) as store:
        children.append(pid := fork(_hold_writer_lock, path, ready_w, release_r))
        os.read(ready_r, 1)
        cp = Checkpointer(store, ROLE)
        assert cp.save({"t": {"v": 1}}, 300e-6, queue=False) is None
        st = store.statistics()
        assert st.queued_jobs == 0 and st.jobs == 0 and cp.statistics().saves == 0
        os.write(release_w, b"x")
        assert reap(pid) == 0
        assert cp.save({"t": {"v": 2}}, 5.0, queue=False) is True
        assert store.load_checkpoint(ROLE)["states"] == {"t": {"v": 2}}
        assert store.statistics().jobs == 0 and cp.statistics().inline == 1


def _grow_writer(path, who, n) -> int:
    store = Store.open(path, map_size=1 << 18, discovery_batch=25)
    for i in range(1, n + 1):
        store.append_discovery(who, {"i": i, "pad": "p" * 1000})
    store.flush()
    grew = store.statistics().grows + store.statistics().resizes_adopted
    store.close()
    return 0 if grew else 3


def test_map_full_grows_safely_with_two_writer_processes(tmp_path, children):
    path = str(tmp_path / "s")
    parent = Store.open(path, map_size=1 << 18)      # open before: must adopt their growth
    children.extend([fork(_grow_writer, path, "w1", 1500), fork(_grow_writer, path, "w2", 1500)])
    assert [reap(pid, 60) for pid in children] == [0, 0]
    with parent.read() as r:
        for who in ("w1", "w2"):
            assert [rec["i"] for _, rec in r.records("discoveries", who)] == list(range(1, 1501))
    assert parent.save_checkpoint(ROLE, {"after": "growth"}) == 1
    assert parent.statistics().resizes_adopted >= 1
    parent.close()
    assert os.path.getsize(os.path.join(path, "data.mdb")) > 3 * 1500 * 1000 // 2
    assert verify(path) == []


def _read_and_wait(path, ready_w) -> int:
    store = Store.open(path)
    with store.read():
        os.write(ready_w, b"r")
        time.sleep(60)
    return 0


def test_reader_check_frees_the_slot_of_a_killed_reader(tmp_path, children):
    path = str(tmp_path / "s")
    store = Store.open(path)
    r, w = os.pipe()
    children.append(pid := fork(_read_and_wait, path, w))
    os.read(r, 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert store.reader_check() >= 1
    store.close()


def _child_uses_store(inherited, path) -> int:
    try:
        inherited.save_checkpoint("child", {"x": 1})
        return 4                              # the parent's handle must be dead here
    except StoreError:
        pass
    with Store.open(path) as mine:             # and its own must open (nothing carried over)
        mine.save_checkpoint("child", {"x": 2})
    return 0


def test_a_store_open_across_fork_is_closed_in_the_child_and_kept_in_the_parent(tmp_path, children):
    path = str(tmp_path / "s")
    store = Store.open(path)
    store.save_checkpoint(ROLE, {"before": 1})
    store.append_discovery(ROLE, {"pending": "at fork"})
    with store.read() as r:                   # a reader slot the child must not release
        assert r.last_seq("tasks", ROLE) == 1
    children.append(pid := fork(_child_uses_store, store, path))
    assert reap(pid) == 0
    store.save_checkpoint(ROLE, {"after": 1})
    with store.read() as r:
        assert r.last("tasks", "child")["states"] == {"x": 2}
        assert r.last_seq("discoveries", ROLE) == 1   # flushed before the fork
    store.close()
    assert verify(path) == []


def test_durability_settings_open_and_commit(tmp_path):
    for durability in ("process", "periodic", "power"):
        with Store.open(tmp_path / durability, durability=durability, sync_interval_s=0.01) as s:
            cp = Checkpointer(s, ROLE)
            assert cp.save({"t": 1}, 5.0)
            time.sleep(0.03)
            s.append_discovery(ROLE, {"d": 1})
            s.flush()
            if durability == "periodic":
                assert s.statistics().syncs >= 1
        with Store.open(tmp_path / durability, readonly=True) as s:
            assert s.load_checkpoint(ROLE)["states"] == {"t": 1}


def _open_fails_cleanly(path) -> int:
    try:
        Store.open(path)
    except StoreError as e:
        return 0 if "already open" in str(e) else 5
    return 6


def test_fork_inside_a_read_does_not_deadlock_and_the_child_gets_a_clear_error(tmp_path, children):
    path = str(tmp_path / "s")
    with Store.open(path) as store:
        with store.read() as r:
            children.append(pid := fork(_open_fails_cleanly, path))
            assert r.last_seq("tasks", ROLE) == 0
        assert reap(pid) == 0
        assert store.save_checkpoint(ROLE, {"ok": 1}) == 1


def test_append_job_is_committed_in_one_transaction_with_its_neighbours_and_calls_back(tmp_path):
    """append_job queues without waiting: deliveries queued together commit together (one
    transaction, one fsync), each callback runs once, after its record is readable, in the
    writer thread or at once for a job already finished."""
    import threading
    path = str(tmp_path / "s")
    with Store.open(path) as store:
        seen, lock = [], threading.Lock()
        with store._wlock:         # hold the writer back so all 20 are queued together
            jobs = [store.append_job("inbox", "moralis", {"delivery": i}, durable=True)
                    for i in range(20)]

            def cb(job):
                with store.read() as r:
                    got = r.last_seq("inbox", "moralis")
                with lock:
                    seen.append((job.results[-1], got, threading.current_thread().name))
            for j in jobs:
                j.add_done_callback(cb)
        assert all(j.wait(10) for j in jobs)
        deadline = time.monotonic() + 10
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(s for s, _, _ in seen) == list(range(1, 21))
        assert all(got >= seq for seq, got, _ in seen)     # readable when told
        stats = store.statistics()
        assert stats.syncs <= 2, stats                      # the lot in one fsync, not 20
        late = []
        jobs[0].add_done_callback(late.append)              # already finished: at once
        assert late == [jobs[0]]
        assert len(seen) == 20                              # and nobody was told twice


@pytest.mark.parametrize("inline", [False, True])
def test_discoveries_keep_their_order_when_a_checkpoint_carries_earlier_ones(tmp_path, inline):
    """A checkpoint takes the discoveries buffered when it is encoded; ones buffered after it
    and committed in the same transaction must get later seqs (seen: a live writer's record
    i=5 at seq 7, the checkpoint's discoveries committed after a newer flush)."""
    store = Store.open(tmp_path / "s", discovery_flush_s=60.0)
    for i in (1, 2, 3):
        store.append_discovery(ROLE, {"i": i})
    op = store.checkpoint_op(ROLE, {"t": {"upto": 3}})        # carries 1, 2, 3
    for i in (4, 5):
        store.append_discovery(ROLE, {"i": i})                # buffered after it
    assert store.write([op], inline=inline).wait(10)
    store.flush()
    with store.read() as r:
        assert [(s, rec["i"]) for s, rec in r.records("discoveries", ROLE)] == \
            [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert store.load_checkpoint(ROLE)["states"] == {"t": {"upto": 3}}
    store.close()


def test_an_inline_commit_handed_back_on_a_full_map_keeps_order_and_its_result(tmp_path):
    """The inline commit of a checkpoint hits the map's end (the discoveries buffered since
    outgrow it): the writer thread grows the map and commits it; the discoveries stay in
    the order appended and the job's result is still the checkpoint's seq."""
    store = Store.open(tmp_path / "s", map_size=1 << 16, discovery_flush_s=60.0)
    pad = "p" * 1000
    for i in (1, 2, 3):
        store.append_discovery(ROLE, {"i": i, "pad": pad})
    op = store.checkpoint_op(ROLE, {"t": {"upto": 3}})
    for i in range(4, 121):                                   # ~120 KB: over the 64 KiB map
        store.append_discovery(ROLE, {"i": i, "pad": pad})
    job = store.write([op], inline=True)
    assert job.wait(30) and job.error is None and not job.inline   # handed to the writer
    assert job.results[-1] == 1                                     # the checkpoint's seq
    store.flush()
    assert store.statistics().grows >= 1
    with store.read() as r:
        assert [rec["i"] for _, rec in r.records("discoveries", ROLE)] == list(range(1, 121))
    store.close()


def test_delete_through_goes_oldest_first_in_batches_and_never_takes_the_newest(tmp_path):
    """Retention (the webhook inbox): records up to a seq go, `limit` per transaction; the
    newest under the prefix stays whatever seq is asked, so appends continue after it."""
    with Store.open(str(tmp_path / "s")) as store:
        store.append_many("inbox", "moralis", [{"i": i} for i in range(1, 11)]).wait(10)
        store.append_many("inbox", "other", [{"i": 1}]).wait(10)
        job = store.delete_through("inbox", "moralis", 6, limit=4)
        assert job.wait(10) and job.results == [4]
        job = store.delete_through("inbox", "moralis", 6, limit=4)
        assert job.wait(10) and job.results == [2]
        with store.read() as r:
            assert [s for s, _ in r.records("inbox", "moralis")] == [7, 8, 9, 10]
        job = store.delete_through("inbox", "moralis", 10**9, limit=100)
        assert job.wait(10) and job.results == [3]
        assert store.append("inbox", "moralis", {"i": 11}) == 11     # not 1 again
        with store.read() as r:
            assert [s for s, _ in r.records("inbox", "moralis")] == [10, 11]
            assert [s for s, _ in r.records("inbox", "other")] == [1]
        with pytest.raises(StoreError, match="unknown database 'events'"):
            store.delete_through("events", "moralis", 1)
