"""A role's status document on disk (run_dir/roles/<role>.info.json), written in place.

    role (RoleRuntime.set_info) ── InfoFile.write(json) ── one pwrite at offset 0, padded with
                                                           spaces to the file's size
    `status`, /metrics ─────────── read_info(path) ─────── parse; a torn read is read again

Why not a new file and a rename (atomic for readers): on ext4 that is an inode created and one
freed per write, 0.3-1 ms of CPU, and when the journal was committing the rename blocked the
role for up to 17 ms — with an interrupt's signal handler waiting behind it (the role runs it
between two safe points of a background task; `bench switch`: 25-32 of the ~35 agent switches
over 1 ms had one in the way).  A pwrite into a file that does not grow is a copy into the page
cache (~10 µs).  JSON allows trailing whitespace, so the padding parses; a reader that meets a
half-written document gets a parse error and reads again.
"""
from __future__ import annotations

import os
import time

import orjson


class InfoFile:
    """One role's info file, opened on the first write and rewritten in place."""

    def __init__(self, path):
        self.path = path
        self.fd = -1
        self.size = 0          # bytes in the file: a shorter document is padded to this

    def write(self, body: bytes) -> None:
        """Replace the document with `body` (OSError: the run dir is gone or full)."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self.size = os.fstat(self.fd).st_size
        pad = self.size - len(body)
        os.pwrite(self.fd, body + b" " * pad if pad > 0 else body, 0)
        if pad < 0:
            self.size = len(body)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_info(path, tries: int = 3) -> dict | None:
    """The document at `path`, or None (missing, not a JSON object, or torn `tries` times)."""
    for i in range(tries):
        try:
            with open(path, "rb") as f:
                doc = orjson.loads(f.read())
        except OSError:
            return None
        except orjson.JSONDecodeError:   # caught mid-write (or an empty new file): again
            if i + 1 < tries:
                time.sleep(0.001)
            continue
        return doc if isinstance(doc, dict) else None
    return None
