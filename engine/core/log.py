"""Structured logs: one line per event, naming the process (role) and pid.

    2026-11-26T07:30:00.123Z INFO  supervisor[4123] role started role=arbitrum-spotter pid=4130

or, with `log_format = "json"`, one JSON object per line with the same fields.  Every process
writes to stderr and appends to the engine's log file itself (O_APPEND: lines from several
processes never interleave within a line).  Never call these from a signal handler: handlers
only record (STYLE.md; gunicorn deadlocked twice logging from handlers).
"""
from __future__ import annotations

import os
import sys
import time

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Log:
    def __init__(self, proc: str, *, fmt: str = "text", level: str = "info",
                 path: str | os.PathLike | None = None, stderr: bool = True):
        self.proc, self.fmt, self.level = proc, fmt, LEVELS[level]
        self.stderr = stderr
        self.fd = None
        self.path = path
        if path is not None:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def reopen(self, proc: str | None = None) -> "Log":
        """After fork: a fresh handle with this process's name."""
        new = Log(proc or self.proc, fmt=self.fmt, level=_name(self.level), path=None,
                  stderr=self.stderr)
        new.path = self.path
        if self.path is not None:
            new.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
        return new

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def line(self, level: str, msg: str, fields: dict) -> bytes:
        ts = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
        if self.fmt == "json":
            doc = {"ts": stamp, "level": level, "proc": self.proc, "pid": os.getpid(),
                   "msg": msg, **fields}
            return orjson.dumps(doc, default=str) + b"\n"
        kv = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        return (f"{stamp} {level.upper():<5} {self.proc}[{os.getpid()}] {msg}"
                f"{' ' + kv if kv else ''}\n").encode()

    def log(self, level: str, msg: str, **fields) -> None:
        if LEVELS[level] < self.level:
            return
        data = self.line(level, msg, fields)
        if self.stderr:
            try:
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        if self.fd is not None:
            try:
                os.write(self.fd, data)
            except OSError:
                pass

    def debug(self, msg: str, **f) -> None:
        self.log("debug", msg, **f)

    def info(self, msg: str, **f) -> None:
        self.log("info", msg, **f)

    def warning(self, msg: str, **f) -> None:
        self.log("warning", msg, **f)

    def error(self, msg: str, **f) -> None:
        self.log("error", msg, **f)


def _name(level: int) -> str:
    return next(k for k, v in LEVELS.items() if v == level)


def _fmt(v) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s
