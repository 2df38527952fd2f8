"""roles.webhook:MoralisReceiver — Moralis Streams webhooks into the durable inbox, then on to
the chain monitors.  Enabled by an engine.toml `[moralis]` section (engine/config.py adds the
role `moralis-receiver`).

    ┌─────────────────────────── the receiver: one supervised process ───────────────────────────┐
    │ HTTP thread: asyncio + aiohttp, nice 0        │ main thread: the role loop (engine/core)     │
    │  POST <path>  size?  ─ no ─► 413, unread      │  process-inbox task (CRITICAL), parked on    │
    │               x-signature? ─ no ─► 401        │  the wake-up pipe:                           │
    │               Streams shape? ─ no ─► 400      │   inbox records after its cursor             │
    │               inbox += record (LMDB, fsync;   │   ─► logs (engine/chain/moralis.py)          │
    │                 one transaction per loop turn,│   ─► SeenLogs drops copies already handed on │
    │                 one fsync per batch: awaited) │                                              │
    │                 failed? ─► 503, nothing kept  │   ─► out.<receiver> ring ─► signal readers   │
    │               200 ───── wake-up pipe ────────►│   cursor in the task state (checkpointed)    │
    │  other method ─► 405;  GET /health            │  heartbeat, signals, checkpoints as usual    │
    └────────────────────────────────────────────────────────────────────────────────────────────┘

Why aiohttp runs in a thread of the role process, not as the role's generator tasks.  The role
loop sleeps in select() on its own fds and turns a generator a few µs at a time; an asyncio loop
wants to own its selector, its timers (keep-alive, slow clients) and to run whenever a socket is
ready.  Stepping it from a task would mean polling it (CPU spent when idle, latency when not) or
nesting its selector in ours, and a slice that parses a 4 MiB body would hold up both.  The
receiver is never interrupted by events (it reads no ring), so the only thing the thread can
starve is the heartbeat: the thread does I/O, hashing and JSON in C, releases the GIL while
LMDB commits, and role_main sets a 0.5 ms switch interval; tests/webhook measures the heartbeat
during a 1 000-delivery burst.  The thread is started before the role drops to background
priority (setpriority is per thread on Linux), so HTTP is served at nice 0 while the hand-off
task runs at nice 10 like every role's background work.

The guarantee is the issue's: a 200 means the delivery is committed and fsynced in the `inbox`
database (key moralis/<seq>); a restart processes whatever was accepted and not yet processed
(the cursor is the task state; the ring's tail tells a restarted receiver what it had already
handed on: engine/chain/hooks.py).  Nothing a sender does yields a 500: our own failure is a
503, which Moralis retries.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time

import orjson
from aiohttp import web

from engine.chain import moralis
from engine.chain.hooks import (INBOX_PREFIX, SeenLogs, handoff_records, inbox_record,
                                last_handoff)
from engine.core.role import RoleKind
from engine.core.signals import drain
from engine.core.switch import EventPublisher, Interrupter
from engine.core.tasks import Priority, Task, Wait

from . import metrics
from .groupcommit import GroupCommit
from .inbox_trim import TrimInbox

BATCH = 32              # inbox records read per read transaction
CURSOR_COMMIT_S = 0.05  # the cursor reaches LMDB this soon after it moves


class Stats:
    """Counters the HTTP thread and the role loop share (plain ints: one writer each)."""

    def __init__(self):
        self.accepted = self.tests = self.ignored = self.duplicates = 0
        self.refused: dict[int, int] = {}
        self.chains: dict[str, dict[str, int]] = {}
        self.last_seq = self.cursor = 0
        self.trimmed = 0        # processed deliveries deleted from the inbox (TrimInbox)
        self.last_delivery = 0.0
        self.store_error: str | None = None
        self.group = None       # the server's GroupCommit: the inbox's fsync figures

    def chain(self, name: str) -> dict[str, int]:
        return self.chains.setdefault(name, {"deliveries": 0, "logs": 0, "duplicates": 0})

    def health(self) -> dict:
        age = time.monotonic() - self.last_delivery if self.last_delivery else None
        return {"status": "ok" if self.store_error is None else "store failing",
                "store_error": self.store_error, "inbox_depth": max(0, self.last_seq - self.cursor),
                "inbox_last": self.last_seq, "processed": self.cursor, "trimmed": self.trimmed,
                "last_delivery_age_s": None if age is None else round(age, 3),
                "accepted": self.accepted, "tests": self.tests, "ignored": self.ignored,
                "refused": {str(k): v for k, v in sorted(self.refused.items())},
                "inbox_fsync": self.group.fsync_stats() if self.group is not None else None,
                "chains": self.chains}


class WebhookServer:
    """The HTTP side: accepts deliveries into `store`'s inbox; `on_accept(seq)` after each.
    Usable without a role (tests run it in-process beside a real Store).  store=None answers
    200 without committing anything: only the benchmark's baseline does that."""

    def __init__(self, store, settings: dict, secret: str, stats: Stats, log, on_accept=None):
        self.store, self.settings, self.secret = store, settings, secret.encode()
        self.stats, self.log, self.on_accept = stats, log, on_accept
        self.max_body = int(settings["max_body"])
        self.inbox: GroupCommit | None = None   # made in the HTTP thread's loop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.ports: list[int] = []

    # -- life ---------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="moralis-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the webhook server did not start within "
                               f"{timeout}s")
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.inbox is not None:         # every commit in flight ends before the store closes
            self.inbox.close(timeout)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:       # a bind failure: start() raises it in the role
            self.error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        if self.store is not None:
            self.inbox = self.stats.group = GroupCommit(self.store, INBOX_PREFIX,
                                                        asyncio.get_running_loop())
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", self.settings["path"], self.webhook)
        app.router.add_route("*", "/health", self.health)
        # lingering_time=0: a refused body is not drained (aiohttp reads it for 10 s by
        # default); the connection is closed after the answer instead.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, lingering_time=0)
        await runner.setup()
        try:
            for item in self.settings["listen"]:
                host, _, port = item.rpartition(":")
                site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)
                await site.start()
                self.ports.append(site._server.sockets[0].getsockname()[1])
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- handlers -----------------------------------------------------------------------------
    def _refuse(self, status: int, why: str, close: bool = False) -> web.Response:
        self.stats.refused[status] = self.stats.refused.get(status, 0) + 1
        resp = web.Response(body=orjson.dumps({"ok": False, "error": why}), status=status,
                            content_type="application/json")
        if close:
            resp.force_close()
        return resp

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        t_origin = time.monotonic_ns()
        try:
            return await self._webhook(request, t_origin)
        except Exception as e:   # ours, not the sender's: Moralis retries a 503
            self.log.error("webhook failed", error=repr(e))
            return self._refuse(503, "internal error; retry", close=True)

    async def _webhook(self, request: web.Request, t_origin: int) -> web.StreamResponse:
        if request.method != "POST":
            resp = self._refuse(405, f"{request.method} not allowed: POST a Streams delivery")
            resp.headers["Allow"] = "POST"
            return resp
        if request.content_length is not None and request.content_length > self.max_body:
            return self._refuse(413, f"body of {request.content_length} bytes is over max_body "
                                     f"({self.max_body})", close=True)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"body over max_body ({self.max_body})", close=True)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            return self._refuse(400, f"body not received whole: {e}", close=True)
        except Exception as e:    # aiohttp's payload errors: a truncated or malformed body
            return self._refuse(400, f"body not received whole: {type(e).__name__}", close=True)
        if not moralis.signature_ok(body, self.secret, request.headers.get("x-signature")):
            return self._refuse(401, "x-signature missing or wrong")
        try:
            d = moralis.parse(body)
        except moralis.BodyError as e:
            return self._refuse(400, f"not a Streams delivery: {e}")
        rec = inbox_record(d, body, t_origin)
        if self.store is None:      # `syndicate bench webhook`'s baseline: no durable inbox
            return _ok(0, d.test)
        try:
            seq = await self._commit(rec)
        except Exception as e:
            self.stats.store_error = f"{type(e).__name__}: {e}"
            self.log.error("inbox commit failed: answering 503", error=self.stats.store_error)
            return self._refuse(503, "could not commit the delivery; retry", close=True)
        st = self.stats
        st.store_error = None
        st.last_seq = max(st.last_seq, seq)
        st.last_delivery = time.monotonic()
        st.accepted += 1
        if d.test:
            st.tests += 1
        elif d.chain is not None:
            st.chain(d.chain)["deliveries"] += 1
        if self.on_accept is not None:
            self.on_accept(seq)
        return _ok(seq, d.test)

    async def _commit(self, rec: dict) -> int:
        """The delivery committed and fsynced with the others of its batch (roles/groupcommit.py):
        the loop goes on serving while the disk works."""
        return await self.inbox.add(rec)

    async def health(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self._refuse(405, "GET /health")
        doc = self.stats.health()
        return web.Response(body=orjson.dumps(doc), content_type="application/json",
                            status=200 if self.stats.store_error is None else 503)


def _ok(seq: int, test: bool) -> web.Response:
    return web.Response(body=orjson.dumps({"ok": True, "inbox": seq, "test": test}),
                        content_type="application/json")


class ProcessInbox(Task):
    """Hands accepted deliveries on, in inbox order; its state is the processed cursor."""

    name = "process-inbox"
    priority = Priority.CRITICAL
    interval = 0.0

    def __init__(self, rx: "MoralisReceiver", **kw):
        super().__init__(**kw)
        self.rx = rx

    def initial_state(self):
        return {"cursor": 0}

    def run(self, ctx):
        rx = self.rx
        yield from rx.recover(self.state)
        while True:
            rx.report()
            with rx.rt.store.read() as r:
                batch = list(itertools.islice(
                    r.records("inbox", INBOX_PREFIX, after_seq=self.state["cursor"]), BATCH))
            if not batch:
                yield Wait(fd=rx.wake_r, until=time.monotonic() + 1.0)
                rx.drain_wake()
                continue
            for seq, rec in batch:
                rx.process(seq, rec)
                self.state["cursor"] = rx.stats.cursor = seq
                yield
            rt = rx.rt
            rt.next_checkpoint = min(rt.next_checkpoint, time.monotonic() + CURSOR_COMMIT_S)


class MoralisReceiver(RoleKind):
    """Options: `dedup_window` (log keys remembered, 200 000), `rebuild` (deliveries re-read at
    start to remember what was handed on, 20 000)."""

    OPTIONS = {"moralis": (dict, None, "the checked [moralis] section (the configuration fills it "
                                       "in, so a reload that changes the section restarts the role)"),
               "dedup_window": (int, 200_000, "log keys remembered to drop repeated deliveries"),
               "rebuild": (int, 20_000, "deliveries re-read at start to remember what was handed on")}
    TASKS = {"process-inbox": ProcessInbox, "trim-inbox": TrimInbox}
    METRICS = metrics.RECEIVER      # what /metrics reads from the info `report` writes

    def __init__(self, rt):
        super().__init__(rt)
        settings = getattr(rt.cfg, "moralis", None)
        if not settings:
            raise RuntimeError("roles.webhook:MoralisReceiver needs an engine.toml [moralis] section")
        self.settings = settings
        self.stats = Stats()
        self.seen = SeenLogs(int(self.options.get("dedup_window", 200_000)))
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.resume: tuple[int, int] | None = None
        self.server: WebhookServer | None = None
        self.publisher: EventPublisher | None = None
        self.ring = None

    def tasks(self):
        return [ProcessInbox(self), TrimInbox(self)]

    def trim_floor(self) -> int:
        """Processed deliveries the inbox always keeps (TrimInbox)."""
        cap = self.ring.capacity if self.ring is not None else 0
        return max(1, int(self.options.get("rebuild", 20_000)), cap)

    def on_start(self) -> None:
        w, rt = self.rt.wiring, self.rt
        out = w.outputs.get(self.name)
        if out is None:
            raise RuntimeError(f"{self.name}: no outbox ring (it must not be an event source)")
        self.ring = w.rings[out]
        # The readers are monitors at a higher FIFO priority than roles: signal, never boost
        # (a boost to the role priority would lower them).
        targets = [w.slots[r] for r in w.subscribers.get(out, [])]
        self.publisher = EventPublisher(self.ring, Interrupter(
            w.control, targets, boost_priority=None) if targets else None)
        var = self.settings["secret_env"]
        secret = os.environ.get(var, "")
        if not secret:
            raise RuntimeError(f"environment variable {var} is not set (the Streams secret)")
        with rt.store.read() as r:
            self.stats.last_seq = r.last_seq("inbox", INBOX_PREFIX)
        self.server = WebhookServer(rt.store, self.settings, secret, self.stats, self.log,
                                    on_accept=self._wake)
        self.server.start()
        self.log.info("webhook receiver listening", listen=",".join(self.settings["listen"]),
                      path=self.settings["path"], ring=out, readers=len(targets))

    def on_stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _wake(self, seq: int) -> None:
        try:
            os.write(self.wake_w, b"!")
        except BlockingIOError:   # the pipe is full: the task is awake already
            pass

    def report(self) -> None:
        """The receiver's counters to its status info (and so to /metrics), twice a second
        at most: the hand-off task calls it each turn, at least once a second."""
        now = time.monotonic()
        if now - getattr(self, "_reported", 0.0) < 0.5:
            return
        self._reported = now
        h = self.stats.health()
        per_chain = ", ".join(f"{c} {n['deliveries']}" for c, n in sorted(h["chains"].items()))
        self.rt.set_info({"summary": f"{h['status']}: {h['accepted']} deliveries accepted"
                          + (f" ({per_chain})" if per_chain else "")
                          + f", inbox depth {h['inbox_depth']}", **h,
                          "duplicates": self.stats.duplicates})

    def drain_wake(self) -> None:
        drain(self.wake_r)

    # -- the hand-off (main thread) -----------------------------------------------------------
    def recover(self, state: dict):
        """Once per process: continue after the last hand-off still in the ring (it may be
        newer than the checkpointed cursor), and remember the logs of the deliveries before it."""
        if getattr(self, "_recovered", False):
            return
        self._recovered = True
        tail = last_handoff(self.ring)
        cursor = int(state.get("cursor", 0))
        if tail is not None and tail[0] > cursor:
            seq, part, parts = tail
            if part + 1 < parts:    # killed half-way through one delivery's records
                self.resume = (seq, part + 1)
                cursor = seq - 1
            else:
                cursor = seq
            self.log.info("resumed after the last hand-off in the ring", inbox=seq,
                          checkpointed=state.get("cursor", 0))
        state["cursor"] = self.stats.cursor = cursor
        first = max(0, cursor - int(self.options.get("rebuild", 20_000)))
        while first < cursor:
            with self.rt.store.read() as r:
                batch = list(itertools.islice(r.records("inbox", INBOX_PREFIX, after_seq=first),
                                              min(BATCH, cursor - first)))
            if not batch:
                break
            for seq, rec in batch:
                d = self._delivery(seq, rec)
                if d is not None:
                    self.seen.new_logs(d)
                first = seq
            yield
        if len(self.seen):
            self.log.info("remembered the logs already handed on", keys=len(self.seen))

    def _delivery(self, seq: int, rec: dict) -> moralis.Delivery | None:
        if rec.get("kind") != "delivery" or rec.get("chain") is None:
            return None
        try:
            return moralis.parse(rec["body"].encode())
        except (moralis.BodyError, KeyError, AttributeError) as e:   # accepted, so never
            self.log.error("inbox record does not decode (skipped)", inbox=seq, error=str(e))
            return None

    def process(self, seq: int, rec: dict) -> None:
        d = self._delivery(seq, rec)
        if d is None:
            if rec.get("kind") == "delivery":
                self.stats.ignored += 1       # a chain we do not trade
            return
        new = self.seen.new_logs(d)
        counts = self.stats.chain(d.chain)
        counts["logs"] += len(new)
        counts["duplicates"] += len(d.logs) - len(new)
        self.stats.duplicates += len(d.logs) - len(new)
        if not new:
            return
        records = handoff_records(seq, d, new, int(rec.get("t_origin", 0)))
        if self.resume is not None and self.resume[0] == seq:
            records = records[self.resume[1]:]
            self.resume = None
        if records:
            self.publisher.publish_many(records)
