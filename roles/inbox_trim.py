"""The receiver's inbox retention (roles/webhook.py's MoralisReceiver runs TrimInbox): processed
deliveries older than `[moralis] keep` leave the `inbox` database, the oldest first, in small
transactions that never wait behind the HTTP thread's commits.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.chain.hooks import INBOX_PREFIX
from engine.core.tasks import Priority, Task, Wait

if TYPE_CHECKING:
    from .webhook import MoralisReceiver


class TrimInbox(Task):
    """Deletes processed deliveries older than `[moralis] keep` from the inbox, the oldest
    first, TRIM_BATCH per transaction, so the inbox holds about a day of deliveries instead of
    growing until the map is full (then every delivery would be a 503 and Moralis would end
    the stream); LMDB reuses the freed pages, so the file stops growing.  Never deleted: a
    delivery not yet processed; the newest `floor` processed ones (the `rebuild` a restart
    re-reads to remember what it handed on, and at least a ring's worth, which a lagging
    monitor may still read back); the newest record (where the next seq continues)."""

    name = "trim-inbox"
    priority = Priority.LOW
    interval = 1.0

    def __init__(self, rx: "MoralisReceiver", **kw):
        super().__init__(**kw)
        self.rx = rx

    def initial_state(self):
        return {"trimmed": 0, "through": 0}

    def run(self, ctx):
        rx, st = self.rx, self.state
        store = rx.rt.store
        rx.stats.trimmed = st["trimmed"]
        upto = rx.stats.cursor - rx.trim_floor()   # the newest seq that may go, by count
        if upto <= st["through"]:
            return
        cutoff = time.time_ns() - int(float(rx.settings["keep"]) * 1e9)
        through = _older_than(store, st["through"], upto, cutoff)
        yield
        if through <= st["through"]:
            return

        def deleted(n: int) -> None:
            st["trimmed"] += n
            rx.stats.trimmed = st["trimmed"]
        try:
            yield from trim_through(store, through, deleted)
        except Exception as e:          # a closed or failing store must not stop the role
            rx.log.warning("cannot trim the inbox", error=str(e)[:200])
            return
        st["through"] = through


TRIM_BATCH = 256        # inbox records deleted per transaction


def trim_through(store, through: int, deleted=None):
    """Delete the inbox records up to seq `through`, TRIM_BATCH per transaction, yielding
    between them (a Wait while the writer thread grows a full map; None when another writer
    holds the lock: then try again); `deleted(n)` after each.  Raises what a commit raised.
    TrimInbox and `bench webhook`'s inbox a day in both trim with it."""
    while True:
        job = store.delete_through("inbox", INBOX_PREFIX, through, limit=TRIM_BATCH,
                                   queue=False)
        if job is None:
            yield None
            continue
        while not job.done():
            yield Wait(until=time.monotonic() + 0.01)
        n = job.result()[0]
        if deleted is not None:
            deleted(n)
        if n < TRIM_BATCH:
            return
        yield None


def _older_than(store, lo: int, hi: int, cutoff_ns: int) -> int:
    """The newest seq in (lo, hi] whose delivery arrived before cutoff_ns, or lo: a bisection
    over the seqs (deliveries are stored in arrival order; a gap left by a trim is skipped by
    reading the first record at or after a seq)."""
    def arrived(seq: int) -> tuple[int, int] | None:     # (its seq, received_ns)
        with store.read() as r:
            for s, rec in r.records("inbox", INBOX_PREFIX, after_seq=seq - 1):
                return s, int(rec.get("received_ns", 0)) if isinstance(rec, dict) else 0
        return None

    while lo < hi:
        mid = (lo + hi + 1) // 2
        found = arrived(mid)
        if found is not None and found[0] <= hi and found[1] < cutoff_ns:
            lo = found[0]
        else:
            hi = mid - 1
    return lo
