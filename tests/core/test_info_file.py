"""A role's status info is rewritten in place (engine/core/info.py): no new file and no rename
per write (on ext4 each cost ~1 ms and could block on the journal with an interrupt waiting),
and `status` reads the newest document whatever its length."""
from __future__ import annotations

import os

import orjson

from engine.core.info import InfoFile, read_info


def test_rewritten_in_place_shorter_and_longer(tmp_path):
    p = tmp_path / "r.info.json"
    f = InfoFile(p)
    f.write(orjson.dumps({"summary": "x" * 200}))
    ino = os.stat(p).st_ino
    f.write(orjson.dumps({"summary": "short"}))
    assert read_info(p) == {"summary": "short"}          # the old tail is blanked, not left
    f.write(orjson.dumps({"summary": "y" * 500, "n": 1}))
    assert read_info(p) == {"summary": "y" * 500, "n": 1}
    assert os.stat(p).st_ino == ino and sorted(os.listdir(tmp_path)) == ["r.info.json"]
    f.close()


def test_a_restarted_role_overwrites_the_last_incarnations_file(tmp_path):
    p = tmp_path / "r.info.json"
    InfoFile(p).write(orjson.dumps({"summary": "z" * 300}))
    f = InfoFile(p)
    f.write(orjson.dumps({"summary": "new"}))
    assert read_info(p) == {"summary": "new"}
    f.close()


def test_unreadable_documents_are_none(tmp_path):
    assert read_info(tmp_path / "missing.json") is None
    (tmp_path / "torn.json").write_bytes(b'{"summary": "hal')
    assert read_info(tmp_path / "torn.json", tries=2) is None
    (tmp_path / "list.json").write_bytes(b"[1, 2]")
    assert read_info(tmp_path / "list.json") is None
