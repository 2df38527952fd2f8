"""The two synchronisation pieces of a store: a write job (operations committed in one
transaction, and a way to wait for that) and the gate every transaction of a process passes.

A job is handed out by `WritableStore.write()`; the caller waits on it with a timeout (the
switch path waits only up to its budget), and reads `done()`, `inline`, `results`, `error`,
`committed` once it has finished.  The gate is shared by every transaction of the process and
exclusive for `set_mapsize` (which LMDB allows only while this process has no transaction
open) and for closing the environment, in particular before a fork (engine/core/store/fork.py).
"""
from __future__ import annotations

import contextlib
import threading
import time

from .keys import StoreError


class WriteJob:
    """Some operations (functions of a write txn) to commit in one transaction."""
    __slots__ = ("ops", "durable", "results", "error", "started", "inline", "_done", "submitted",
                 "committed", "_callbacks")

    def __init__(self, ops: list, durable: bool = False):
        self.ops, self.durable = ops, durable
        self.results: list | None = None
        self.error: BaseException | None = None
        self.started = self.inline = False
        self.submitted = time.perf_counter()
        self.committed = 0.0
        self._callbacks: list | None = None
        self._done = threading.Lock()
        self._done.acquire()

    _cb_lock = threading.Lock()     # callbacks added vs. the job finishing: each runs once

    def finish(self, results: list | None, error: BaseException | None) -> None:
        with WriteJob._cb_lock:
            self.results, self.error, self.committed = results, error, time.perf_counter()
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        for fn in callbacks or ():
            fn(self)

    def add_done_callback(self, fn) -> None:
        """fn(job) once the job has finished: at once if it has, else in the thread that
        finishes it (the writer thread), so fn must only hand the news on (e.g. an event
        loop's call_soon_threadsafe): an event loop awaits a commit without a thread of its
        own blocked in wait()."""
        with WriteJob._cb_lock:
            if not self.committed:
                self._callbacks = (self._callbacks or []) + [fn]
                return
        fn(self)

    def done(self) -> bool:
        return self.committed != 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """True once committed (or failed: see .error); False if the timeout passed first."""
        if self.committed:
            return True
        got = self._done.acquire() if timeout is None else self._done.acquire(timeout=max(timeout, 0))
        if got:
            self._done.release()
        return got

    def result(self, timeout: float | None = None) -> list:
        if not self.wait(timeout):
            raise StoreError("write not committed within the timeout")
        if self.error is not None:
            raise self.error
        return self.results


class Gate:
    """Shared by every transaction of this process, exclusive for set_mapsize and for close."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._mine = threading.local()   # how deep this thread is in shared()

    def held_here(self) -> bool:
        return getattr(self._mine, "depth", 0) > 0

    @contextlib.contextmanager
    def shared(self):
        with self._cv:
            while self._exclusive:
                self._cv.wait()
            self._shared += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cv:
                self._shared -= 1
                if not self._shared:
                    self._cv.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cv:
            while self._exclusive:
                self._cv.wait()
            self._exclusive = True
            while self._shared:
                self._cv.wait()

    def release_exclusive(self) -> None:
        with self._cv:
            self._exclusive = False
            self._cv.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()
