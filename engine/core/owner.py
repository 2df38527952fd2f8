"""Who owns an engine name: the machine-wide owner lock, and the engine's run directory.

Shared-memory names (/syn.<engine>.*) are global to the machine, whatever the state dir, so the
proof that a live supervisor owns them must be too: `OwnerLock` is an flock on
/dev/shm/syn.<engine>.lock, held for the supervisor's life, recording its pid and state dir.
The kernel drops an flock when its holder dies however it dies, so a dead owner never blocks a
new start, and a lock file found with content means its owner did not stop cleanly (the
new owner then removes the leftovers).  `RunDir` (state_dir/run/<name>) holds the pid files
`syndicate status` and `ctl` read, with its own flock on supervisor.pid.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import orjson

from .wiring import SHM_DIR, segment_name

LOCK = "lock"   # the owner lock's segment suffix: /syn.<engine>.lock


class AlreadyRunning(Exception):
    pass


class OwnerLock:
    """The machine-wide lock on an engine name (see the module docstring)."""

    def __init__(self, engine: str):
        self.path = f"{SHM_DIR}/{segment_name(engine, LOCK)[1:]}"
        self.fd: int | None = None

    def acquire(self, state_dir: str) -> bool:
        """Take the lock or raise AlreadyRunning naming the owner's pid and state dir; returns
        True if a predecessor died holding it (its leftovers are to be removed)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, _, where = os.pread(fd, 4096, 0).decode(errors="replace").partition("\n")
                os.close(fd)
                raise AlreadyRunning(f"a supervisor of this name is running (pid "
                                     f"{pid.strip() or '?'}, state dir {where.strip() or '?'})")
            # A stopping owner unlinks the file while it holds the lock: if that happened
            # between our open and our flock we hold a lock on a file nobody else will see.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = os.fstat(fd).st_size > 0
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{state_dir}\n".encode(), 0)
        self.fd = fd
        return stale

    def close_in_child(self) -> None:
        """In a forked role: the lock is the supervisor's; a role must not keep it alive."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        """Unlink while still holding it (see acquire), then let go."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class RunDir:
    """state_dir/run/<name>: the lock (supervisor.pid), role pid files, status report, log link.

    The lock is an flock on supervisor.pid held for the supervisor's life: the kernel drops it
    when the process dies however it dies, so a stale file never blocks a new start."""

    def __init__(self, path: Path, log_path: Path):
        self.path, self.log_path = path, log_path
        self.lock_fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; returns True if a dead predecessor left this directory behind."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "roles").mkdir(exist_ok=True)
        pidfile = self.path / "supervisor.pid"
        fd = os.open(pidfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"a supervisor of this name is running (pid {other}, "
                                 f"run dir {self.path})")
        stale = os.fstat(fd).st_size > 0
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd
        for f in (self.path / "roles").iterdir():
            f.unlink(missing_ok=True)
        link = self.path / "log"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(self.log_path, link)
        return stale

    def write_role(self, role: str, pid: int) -> None:
        tmp = self.path / "roles" / f".{role}.tmp"
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.path / "roles" / f"{role}.pid")

    def remove_role(self, role: str) -> None:
        (self.path / "roles" / f"{role}.pid").unlink(missing_ok=True)

    def write_status(self, doc: dict) -> Path:
        p = self.path / "status.json"
        tmp = self.path / ".status.json.tmp"
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        tmp.replace(p)
        return p

    def remove(self) -> None:
        """Leave nothing: the directory goes (the log itself lives in state_dir/log)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        try:
            self.path.parent.rmdir()  # state_dir/run, if no other engine uses it
        except OSError:
            pass
