"""Follow one chain's pool logs over WebSocket: subscriptions, gap backfill, reorgs, failover.

    Follower.run()  (a task generator: yields Wait on the active socket)
      pick the best endpoint ─► connect, check eth_chainId, eth_subscribe newHeads + logs
        ─► catch up: verify the blocks held against the node (walk back to the common
           ancestor, undo what was dropped), eth_getLogs from the last block fully processed
           to the head, in ranges the node accepts (halved on refusal)
        ─► follow: each notification → book.apply(log, t_origin) → its record, published at once
      any error (dead, garbage, wrong chain, timeout) → count it, back off, next endpoint

`book` is the pool book (engine/chain/poolbook.PoolBook): `apply(log, t_origin)` turns a raw
log into a record or None (a duplicate by (block hash, tx, log index), a topic it does not
know), `revert_blocks(hashes)` undoes whole blocks and returns the reverted records.  The
follower never decodes a log itself.

Reorgs: anvil 1.7.1 sends no `removed: true`, so a reorg is seen by hashes: a head whose parent
is not the hash held, a head or a log at a height held under another hash.  `removed: true` is
honoured too.  A block counts as fully processed when the next head has arrived (a block's logs
come before the following head) or when eth_getLogs fetched it.

Endpoint health (engine/chain/health.py): `Endpoint` keeps head, errors, latency; `Prober` (a second task) asks every
standby for eth_blockNumber, so an active node that falls `lag_blocks` behind the best is
demoted, and the first endpoint in the configured order comes back once it is healthy again.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Iterator

from engine.arb import events as ev
from engine.core.tasks import Wait

from .health import Endpoint, Prober, quantity as _int  # noqa: F401  (Prober: its home was here)
from .ws import BadMessage, RpcFailure, RpcTimeout, WsClient, WsError

# every topic the pool book applies: V2 Sync/Swap, V3 Swap/Initialize/Mint/Burn, creations
TOPICS = [ev.SYNC_TOPIC, ev.V2_SWAP_TOPIC, ev.V3_SWAP_TOPIC, ev.V3_INITIALIZE_TOPIC,
          ev.V3_MINT_TOPIC, ev.V3_BURN_TOPIC, ev.PAIR_CREATED_TOPIC, ev.POOL_CREATED_TOPIC]
_TOO_MANY = ("too many", "limit", "range", "exceed", "query returned more")


class Switch(Exception):
    """Leave the active endpoint on purpose (demoted for lag, or a better one is back)."""


class Follower:
    def __init__(self, chain: str, settings: dict, book, *, publish: Callable[[list[dict]], None],
                 log, on_start: Callable[[int], Iterator] | None = None,
                 on_created: Callable[[dict, int], dict | None] | None = None,
                 on_resync: Callable[[int], Iterator] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.chain, self.s, self.book = chain, settings, book
        self.publish, self.log, self.clock = publish, log, clock
        self.on_start = on_start      # (head) -> generator: load the pools' state at that block
        self.on_created = on_created  # (notice, t_origin) -> the new pool's "created" record
        self.on_resync = on_resync    # (head) -> generator: no common block with the node
                                      # (a restarted devnet, a reorg deeper than we hold):
                                      # read every pool again at head, publish it whole
        self._resub: int | None = None   # a pool joined at this block: widen the log filter
        self.idle = False             # parked between notifications (a safe time to re-read)
        self.endpoints = [Endpoint(u, i) for i, u in enumerate(settings["ws"])]
        self.addresses = sorted({*settings["pools"], *settings["factories"]})
        self.timeout = float(settings.get("request_timeout", 5.0))
        self.hashes: OrderedDict[int, str] = OrderedDict()   # number -> hash, last reorg_depth
        self.head = -1               # highest head applied
        self.done = -1               # last block fully processed
        self.base = None             # the block the pool state was read at
        self.active: Endpoint | None = None
        self.ws: WsClient | None = None
        self.counts = {"logs": 0, "records": 0, "dropped": 0, "interrupts": 0, "reverted": 0,
                       "reorgs": 0, "resyncs": 0, "backfilled": 0, "reconnects": 0, "failovers": 0,
                       "bad": 0, "errors": 0, "orphaned_blocks": 0}
        self.status = "starting" if self.endpoints else "no endpoints configured"
        self._subs: dict[str, str] = {}
        self._ws_bad = 0

    # ------------------------------------------------------------------ endpoint choice
    def best_head(self) -> int:
        return max((e.head for e in self.endpoints if e.state not in ("down", "wrong-chain")),
                   default=-1)

    def lagging(self, e: Endpoint) -> bool:
        return e.head >= 0 and self.best_head() - e.head >= self.s["lag_blocks"]

    def pick(self, now: float) -> Endpoint | None:
        ready = [e for e in self.endpoints if e.next_try <= now and e.state != "wrong-chain"]
        ready += [e for e in self.endpoints if e.state == "wrong-chain" and e.next_try <= now]
        if not ready:
            return None
        return min(ready, key=lambda e: (self.lagging(e), e.state == "demoted", e.errors > 0
                                         and e.ok_since is None, e.order))

    def _backoff(self, e: Endpoint, why: str, state: str = "down") -> None:
        e.fail(self.clock(), why, initial=0.2, cap=float(self.s.get("retry_max", 10.0)),
               state=state)

    # ------------------------------------------------------------------ the task
    def run(self) -> Iterator[Wait]:
        if not self.endpoints:
            while True:     # nothing to follow: say so, and stay quiet until a reload
                yield Wait(until=self.clock() + 3600)
        while True:
            now = self.clock()
            ep = self.pick(now)
            if ep is None:
                down = ", ".join(f"{e.url}: {e.last_error}" for e in self.endpoints)
                self.status = f"all endpoints down, retrying ({down})"[:300]
                yield Wait(until=min(e.next_try for e in self.endpoints))
                continue
            ws = WsClient(ep.url)
            self.ws = ws
            try:
                yield from self._session(ep, ws)
            except Switch as why:
                self.counts["failovers"] += 1
                self.log.warning("leaving endpoint", chain=self.chain, url=ep.url, why=str(why))
            except (WsError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
                # a dead, lying or broken node must never take the role down
                self.counts["errors"] += 1
                if isinstance(e, (BadMessage, KeyError, TypeError, ValueError, AttributeError,
                                  IndexError)):
                    self.counts["bad"] += 1
                state = "wrong-chain" if "chain id" in str(e) else "down"
                self._backoff(ep, f"{type(e).__name__}: {e}", state)
                self.log.warning("endpoint failed", chain=self.chain, url=ep.url,
                                 error=f"{type(e).__name__}: {e}"[:300])
            finally:
                ws.close()
                if self.active is ep:
                    self.active = None
                    if ep.state == "active":
                        ep.state = "standby"
                self.counts["reconnects"] += 1

    def _session(self, ep: Endpoint, ws: WsClient) -> Iterator[Wait]:
        self.status = f"connecting to {ep.url}"
        ws.start()
        yield from ws.handshake(self.timeout)
        cid = _int((yield from ws.call("eth_chainId", timeout=self.timeout)), "eth_chainId")
        if cid != self.s["chain_id"]:
            raise ValueError(f"{ep.url}: chain id {cid}, expected {self.s['chain_id']} "
                             f"({self.chain})")
        self._subs = {}
        self._ws_bad = 0
        sid = yield from ws.call("eth_subscribe", ["newHeads"], timeout=self.timeout)
        self._subs[str(sid)] = "heads"
        yield from self._subscribe_logs(ws)
        t0 = self.clock()
        head = _int((yield from ws.call("eth_blockNumber", timeout=self.timeout)), "eth_blockNumber")
        ep.good(self.clock(), head, (self.clock() - t0) * 1e3)
        if self.base is None:
            if self.on_start is not None:
                yield from self.on_start(head)
            self.base = self.done = self.head = head
            yield from self._remember(ws, head)
        else:
            yield from self._catch_up(ws, head)
        self.active, ep.state = ep, "active"
        ep.backoff = 0.0
        self.status = f"following {ep.url}"
        self.log.info("following", chain=self.chain, url=ep.url, head=head)
        next_ping = next_check = self.clock() + 1.0
        ping = None     # (request id, sent at): the liveness ping in flight
        while True:
            yield from self._drain(ws, ep)
            if self._resub is not None:
                yield from self._widen(ws)
            now = self.clock()
            if now >= next_check:      # from the heads it sent: no round trip to wait for
                next_check = now + 0.25
                self._consider_switch(ep, now)
            # The ping is answered between notifications, never waited for: a log that arrives
            # while it is in flight is applied at once (waiting for the answer put the node's
            # round trip, 2-45 ms under load, into the latency of those logs).
            if ping is not None:
                if ws.answered(ping[0]):
                    h = _int(ws.result(ping[0], "eth_blockNumber"), "eth_blockNumber")
                    ep.good(now, h, (now - ping[1]) * 1e3)
                    ping = None
                elif now - ping[1] >= self.timeout:
                    raise RpcTimeout(f"{ws.url}: eth_blockNumber: no answer within "
                                     f"{self.timeout:g} s")
            if ping is None and now >= next_ping:
                next_ping = now + 1.0
                ping = (ws.send("eth_blockNumber"), now)
            if not ws.notifications:
                ws.pump()           # what came while the last ones were applied: no wait
            if not ws.notifications:
                self.idle = True
                yield ws.wait(min(next_ping if ping is None else ping[1] + self.timeout,
                                  next_check))
                self.idle = False
                ws.pump()

    def _subscribe_logs(self, ws: WsClient) -> Iterator[Wait]:
        if self.addresses:
            sid = yield from ws.call("eth_subscribe", ["logs", {"address": self.addresses,
                                                                "topics": [TOPICS]}],
                                     timeout=self.timeout)
            self._subs[str(sid)] = "logs"

    def _widen(self, ws: WsClient) -> Iterator[Wait]:
        """New pools joined: subscribe with them before dropping the old filter (the overlap
        is deduplicated), then fetch their logs since their creation."""
        since, self._resub = self._resub, None
        old = [s for s, k in self._subs.items() if k == "logs"]
        yield from self._subscribe_logs(ws)
        for sid in old:
            # its id stays known: notifications already on the way are still logs of ours
            yield from ws.call("eth_unsubscribe", [sid], timeout=self.timeout)
        if self.head >= since:
            yield from self._backfill(ws, since, self.head)

    def _consider_switch(self, ep: Endpoint, now: float) -> None:
        if self.lagging(ep):
            ep.fail(now, f"{self.best_head() - ep.head} blocks behind the best", initial=5.0,
                    cap=30.0, state="demoted")
            raise Switch(f"demoted: {ep.last_error}")
        for e in self.endpoints:   # the preferred order comes back once healthy for a while
            if e.order < ep.order and e.ok_since is not None and now - e.ok_since >= 3.0 \
                    and not self.lagging(e) and e.next_try <= now:
                raise Switch(f"{e.url} is healthy again and preferred")

    # ------------------------------------------------------------------ notifications
    def _drain(self, ws: WsClient, ep: Endpoint) -> Iterator[Wait]:
        if ws.bad > self._ws_bad:     # frames the client skipped
            self._ws_bad = ws.bad
            ep.errors += 1
            self._bad(ws.last_bad)
        while ws.notifications:
            msg, t_origin = ws.notifications.popleft()
            p = msg.get("params")
            if not isinstance(p, dict) or "result" not in p:
                self._bad(f"a notification without params.result: {msg!r:.120}")
                continue
            kind = self._subs.get(str(p.get("subscription")))
            r = p["result"]
            if kind == "heads":
                n, h, parent = _int(r.get("number"), "head number"), r.get("hash"), r.get("parentHash")
                ep.good(self.clock(), n, ep.latency_ms or 0.0)
                if self.hashes.get(n) == h:   # known from its logs, which came first
                    if n > self.head:
                        self.head, self.done = n, max(self.done, n - 1)
                    continue
                held_parent = self.hashes.get(n - 1)
                if n <= self.head or (held_parent is not None and held_parent != parent) \
                        or n > self.head + 1:
                    yield from self._catch_up(ws, n)
                else:
                    self._hold(n, h)
                    self.head, self.done = n, max(self.done, n - 1)
            elif kind == "logs":
                if not isinstance(r, dict):
                    self._bad(f"a log that is not an object: {r!r:.120}")
                    continue
                n = _int(r.get("blockNumber"), "log blockNumber")
                if self.base is not None and n <= self.base:
                    continue
                if r.get("removed") or self.hashes.get(n, r.get("blockHash")) != r.get("blockHash"):
                    yield from self._catch_up(ws, max(n, self.head))
                    continue
                rec = self._apply(r, t_origin)
                if rec is not None:    # out at once: not after the notifications behind it
                    self._flush([rec])
            else:
                self._bad(f"a notification for an unknown subscription {p.get('subscription')!r}")

    def _apply(self, log: dict, t_origin: int) -> dict | None:
        self.counts["logs"] += 1
        n = _int(log.get("blockNumber"), "log blockNumber")
        h = log.get("blockHash")
        if not isinstance(h, str):
            self._bad(f"a log without blockHash: {log!r:.120}")
            return None
        self._hold(n, h)
        try:
            rec = self.book.apply(log, t_origin)
        except (ValueError, KeyError, TypeError, IndexError) as e:   # truncated data, etc.
            self._bad(f"log {log.get('transactionHash')}:{log.get('logIndex')}: {e}")
            return None
        if rec is None:
            self.counts["dropped"] += 1
        elif rec.get("type") == "created":      # a factory's new pool: read it, watch it
            notice = rec
            rec = self.on_created(notice, t_origin) if self.on_created else None
            if rec is not None and rec["pool"] not in self.addresses:
                self.addresses = sorted({*self.addresses, rec["pool"]})
                b = int(notice["block"])
                self._resub = b if self._resub is None else min(self._resub, b)
        return rec

    def _bad(self, why: str) -> None:
        self.counts["bad"] += 1
        self.log.warning("bad input from the node (ignored)", chain=self.chain, what=why[:300])

    def _flush(self, records: list[dict]) -> None:
        if records:
            self.counts["records"] += len(records)
            self.counts["interrupts"] += sum(1 for r in records if r.get("interrupt"))
            self.publish(records)

    def _drop(self, numbers: list[int]) -> None:
        """Undo the held blocks `numbers` (a reorg dropped them) and publish what was undone."""
        if not numbers:
            return
        self.counts["reorgs"] += 1
        undo = [self.hashes.pop(n) for n in sorted(numbers, reverse=True)]
        records = self.book.revert_blocks(undo)
        self.counts["reverted"] += len(records)
        self.log.warning("reorg: blocks dropped", chain=self.chain, depth=len(numbers),
                         first=min(numbers), records=len(records))
        self._flush(records)
        self.head = min(self.head, min(numbers) - 1)
        self.done = min(self.done, min(numbers) - 1)

    def _hold(self, n: int, h: str) -> None:
        """Hold block n's hash.  The book's records and these hashes always agree: a height
        held under another hash means that block (and any above it) is gone, so it is undone
        first (this also catches a reorg seen half-way: anvil answers while it reorganises)."""
        old = self.hashes.get(n)
        if old is not None and old != h:
            self._drop([k for k in self.hashes if k >= n])
        elif old is None:
            self._orphans(n, h)
        self.hashes[n] = h
        self.hashes.move_to_end(n)
        while len(self.hashes) > self.s["reorg_depth"]:
            self.hashes.popitem(last=False)

    def _orphans(self, n: int, h: str) -> None:
        """Blocks at height n that the book holds under another hash than the node's: logs
        another path applied (a Moralis delivery of an unconfirmed block the chain then left)
        before this follower knew the height.  Undone like a reorg, with every block the book
        holds above them; the heights this follower held above n are fetched again."""
        stray = [x for x in self.book.hashes_at(n) if x != h.lower()]
        if not stray:
            return
        self.counts["reorgs"] += 1
        self.counts["orphaned_blocks"] += len(stray)
        records = self.book.revert_blocks(stray)
        self.counts["reverted"] += len(records)
        above = [k for k in self.hashes if k > n]
        for k in above:
            del self.hashes[k]
        self.log.warning("blocks another path brought are not the node's: undone", chain=self.chain,
                         height=n, blocks=len(stray), records=len(records), refetch=len(above))
        self._flush(records)
        self.done = min(self.done, n - 1)

    # ------------------------------------------------------------------ catching up
    def _block_hash(self, ws: WsClient, n: int) -> Iterator[Wait]:
        b = yield from ws.call("eth_getBlockByNumber", [hex(n), False], timeout=self.timeout)
        if b is None:
            return None      # the node has no block at that height (a shorter chain)
        if not isinstance(b, dict) or not isinstance(b.get("hash"), str):
            raise BadMessage(f"{ws.url}: eth_getBlockByNumber({n}) answered {b!r:.80}")
        return b["hash"]

    def _remember(self, ws: WsClient, n: int) -> Iterator[Wait]:
        h = yield from self._block_hash(ws, n)
        if h is not None:
            self._hold(n, h)

    def _catch_up(self, ws: WsClient, to: int) -> Iterator[Wait]:
        """Make the book agree with the node up to block `to`: undo blocks the node no longer
        has, then fetch every log after the last block fully processed."""
        held = sorted((n for n in self.hashes if n <= max(to, self.head)), reverse=True)
        dropped = []
        for n in held:
            if (yield from self._block_hash(ws, n)) == self.hashes[n]:
                break
            dropped.append(n)
        if held and len(dropped) == len(held):
            self.counts["resyncs"] += 1
            self.log.warning("no block in common with the node within the blocks held: "
                             "reading every pool again", chain=self.chain, head=to,
                             held=f"{held[-1]}..{held[0]}")
            self.hashes.clear()
            if self.on_resync is not None:
                yield from self.on_resync(to)
            self.base = self.done = self.head = to
            yield from self._remember(ws, to)
            return
        self._drop(dropped)
        start = self.done + 1
        if to >= start and self.addresses:
            yield from self._backfill(ws, start, to)
        self.head = max(self.head, to)
        self.done = max(self.done, to)
        if to not in self.hashes:
            yield from self._remember(ws, to)

    def _backfill(self, ws: WsClient, start: int, to: int) -> Iterator[Wait]:
        step = int(self.s.get("backfill_blocks", 2000))
        lo = start
        while lo <= to:
            hi = min(to, lo + step - 1)
            try:
                logs = yield from ws.call("eth_getLogs", [{"fromBlock": hex(lo), "toBlock": hex(hi),
                                                           "address": self.addresses,
                                                           "topics": [TOPICS]}],
                                          timeout=self.timeout * 4)
            except RpcFailure as e:
                if step > 1 and any(w in e.text.lower() for w in _TOO_MANY):
                    step = max(1, step // 2)
                    continue
                raise
            if not isinstance(logs, list):
                raise BadMessage(f"{ws.url}: eth_getLogs answered {logs!r:.80}")
            t_origin = time.monotonic_ns()
            records = []
            for log in logs:
                if not isinstance(log, dict):
                    self._bad(f"eth_getLogs gave a log that is not an object: {log!r:.80}")
                    continue
                rec = self._apply(log, t_origin)
                if rec is not None:
                    records.append(rec)
            self.counts["backfilled"] += len(records)
            self._flush(records)
            lo = hi + 1

    def statistics(self) -> dict:
        return {"status": self.status, "head": self.head, "done": self.done,
                "active": self.active.url if self.active else None, **self.counts,
                "endpoints": [e.statistics() for e in self.endpoints]}
