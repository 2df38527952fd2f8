"""`syndicate snapshot`: against a store being written by a live process, a copy, and bad input."""
from __future__ import annotations

import csv
import io
import os
import signal
import time

import lmdb
import orjson
import pytest

from engine.core.checkpoint import Checkpointer
from engine.core.store import Store
from engine.snapshot import main

ROLE = "base-analyst"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def listing(path) -> dict:
    """Every file under path with its size and mtime: proof that nothing was written.  lock.mdb
    is LMDB's shared reader table: any reader, read-only or not, takes a slot in it."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out[os.path.join(root, f)] = (st.st_size, 0 if f == "lock.mdb" else st.st_mtime_ns)
    return out


def _live_writer(path, ready_w) -> None:
    store = Store.open(path, discovery_flush_s=0.002)
    cp = Checkpointer(store, ROLE)
    i = 0
    while True:
        i += 1
        store.append_discovery(ROLE, {"i": i, "pad": "z" * 200})
        if i % 10 == 0:
            cp.save({"scan": {"i": i}, "learn": {"w": [i] * 20}}, 300e-6)
            store.log_event("tick", i=i)
        if i == 200:
            store.flush()
            os.write(ready_w, b"r")


@pytest.fixture
def live_store(tmp_path):
    """A store written continuously by a separate process for the whole test."""
    path = tmp_path / "live"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _live_writer(str(path), w)
        finally:
            os._exit(1)
    os.read(r, 1)
    yield path
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_every_command_against_a_live_engine_then_against_its_copy(capsys, live_store, tmp_path):
    code, out, err = run(capsys, live_store, "info")
    assert code == 0, err
    assert "schema    version 1 (syndicate)" in out and ROLE in out and "discoveries" in out

    code, out, _ = run(capsys, live_store, "info", "--json")
    doc = orjson.loads(out)
    assert doc["last_checkpoint"][ROLE]["tasks"] == ["learn", "scan"]
    assert doc["databases"]["discoveries"]["entries"] >= 200

    code, out, _ = run(capsys, live_store, "ls", "discoveries", "--prefix", f"{ROLE}/1", "--limit", "3")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == [
        f"{ROLE}/1", f"{ROLE}/10", f"{ROLE}/11"]   # numeric order, filtered as text

    code, out, _ = run(capsys, live_store, "show", "discoveries", f"{ROLE}/7")
    assert code == 0 and orjson.loads(out)["i"] == 7

    code, out, _ = run(capsys, live_store, "export", "--format", "jsonl")
    rows = [orjson.loads(line) for line in out.splitlines()]
    seqs = [int(r["key"].split("/")[1]) for r in rows if r["db"] == "discoveries"]
    assert seqs == list(range(1, len(seqs) + 1))      # one consistent point in time, no gaps
    assert {r["db"] for r in rows} >= {"meta", "tasks", "discoveries", "events"}

    out_csv = tmp_path / "tasks.csv"
    code, _, _ = run(capsys, live_store, "export", "--db", "tasks", "--format", "csv", "-o", out_csv)
    table = list(csv.reader(io.StringIO(out_csv.read_text())))
    assert code == 0 and table[0] == ["db", "key", "value"]
    assert all(r[0] == "tasks" and "states" in orjson.loads(r[2]) for r in table[1:])

    code, out, err = run(capsys, live_store, "verify")
    assert code == 0, out + err
    assert out.startswith("ok:")

    backup = tmp_path / "backup"
    code, out, err = run(capsys, live_store, "copy", backup)
    assert code == 0, err
    compact = tmp_path / "compact"
    assert run(capsys, live_store, "copy", compact, "--compact")[0] == 0
    time.sleep(0.05)                                  # the engine keeps writing; the copy does not
    before = listing(backup)
    for copy in (backup, compact):
        code, out, err = run(capsys, copy, "verify")
        assert code == 0, out + err
        code, out, _ = run(capsys, copy, "export", "--db", "discoveries", "--format", "jsonl")
        seqs = [int(orjson.loads(line)["key"].split("/")[1]) for line in out.splitlines()]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 200
    assert listing(backup) == before                  # reading a copy wrote nothing to it
    assert not os.path.exists(backup / "lock.mdb")    # not even a lock file

    code, _, err = run(capsys, live_store, "copy", backup)
    assert code == 2 and "not empty" in err


@pytest.mark.parametrize("case", ["missing", "file", "empty dir", "random bytes", "truncated",
                                  "tiny", "foreign", "newer schema"])
def test_bad_paths_exit_2_with_one_line_and_write_nothing(capsys, tmp_path, case):
    path = tmp_path / "target"
    if case == "file":
        path.write_text("not a store")
    elif case == "empty dir":
        path.mkdir()
    elif case == "random bytes":
        path.mkdir()
        (path / "data.mdb").write_bytes(os.urandom(64 * 1024))
    elif case in ("truncated", "tiny", "newer schema"):
        with Store.open(path) as store:
            for i in range(3000):
                store.append_discovery(ROLE, {"i": i, "pad": "q" * 300})
            store.save_checkpoint(ROLE, {"t": 1})
        data = path / "data.mdb"
        if case == "truncated":
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        elif case == "tiny":
            data.write_bytes(data.read_bytes()[:4096])
        else:
            env = lmdb.open(str(path), max_dbs=16)
            meta = env.open_db(b"meta")
            with env.begin(write=True) as txn:
                txn.put(b"schema_version", b"7", db=meta)
            env.close()
    elif case == "foreign":
        env = lmdb.open(str(path), max_dbs=4)
        with env.begin(write=True) as txn:
            txn.put(b"k", b"v", db=env.open_db(b"theirs", txn=txn))
        env.close()
    before = listing(tmp_path)
    for command in (["info"], ["ls", "tasks"], ["show", "tasks", f"{ROLE}/1"],
                    ["export", "--format", "jsonl"], ["copy", tmp_path / "dest"], ["verify"]):
        code, out, err = run(capsys, path, *command)
        assert code == 2, (case, command, out, err)
        assert len(err.strip().splitlines()) == 1 and str(path) in err, (case, command, err)
        assert out == ""
    assert listing(tmp_path) == before, "a rejected path was written to"
    assert not (tmp_path / "dest").exists()


def test_bad_arguments_exit_2(capsys, tmp_path):
    with Store.open(tmp_path / "s") as store:
        store.save_checkpoint(ROLE, {"t": 1})
    for argv in ([], [tmp_path / "s"], [tmp_path / "s", "frobnicate"], [tmp_path / "s", "ls", "nope"],
                 [tmp_path / "s", "export"], [tmp_path / "s", "show", "tasks", "no-seq"],
                 [tmp_path / "s", "show", "events", "12x"], [tmp_path / "s", "show", "tasks", f"{ROLE}/9"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
