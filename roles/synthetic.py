"""roles.synthetic:SyntheticSource (also `roles.monitor:SyntheticSource`): swap-shaped events at
a configured rate into `events.<chain>`, without a chain.  It drives `syndicate bench switch`
and tests.  Every event it writes says `"source": "synthetic"`.  Options (declared,
with their defaults, in `SyntheticSource.OPTIONS`):

    rate        events per second per chain (default 2)
    burst       events per publication; the roles drain a burst in one switch (default 1)
    count       stop emitting after this many publications (default: never)
    impact_bps  the price impact the events claim (default 75)
"""
from __future__ import annotations

import time

from engine.config import CHAINS
from engine.core.role import RoleKind
from engine.core.tasks import Priority, Task, Wait


class _Emit(Task):
    name = "emit"
    priority = Priority.CRITICAL
    interval = 0.0

    def __init__(self, source: "SyntheticSource", ring: str, chain: str, **kw):
        super().__init__(name=f"emit-{chain}", **kw)
        self.source, self.ring, self.chain = source, ring, chain

    def initial_state(self):
        return {"published": 0, "events": 0}

    def run(self, ctx):
        o = self.source.options
        period = 1.0 / float(o["rate"])
        burst = int(o["burst"])
        count = o["count"]
        nxt = time.monotonic()
        st = self.state
        while count is None or st["published"] < int(count):
            nxt = max(nxt + period, time.monotonic())
            yield Wait(until=nxt)
            events = [{"id": f"{self.chain}-{st['events'] + i}", "chain": self.chain,
                       "source": "synthetic", "pool": "0x" + "00" * 20,
                       "impact_bps": float(o["impact_bps"])} for i in range(burst)]
            self.source.rt.publish(self.ring, events)
            st["published"] += 1
            st["events"] += burst
        while True:   # done: stay quiet without spinning
            yield Wait(until=time.monotonic() + 3600)


class SyntheticSource(RoleKind):
    OPTIONS = {"rate": (float, 2.0, "events per second per chain"),
               "burst": (int, 1, "events per publication"),
               "count": (int, None, "stop after this many publications (None: never)"),
               "impact_bps": (float, 75.0, "the price impact the events claim")}
    TASKS = {f"emit-{c}": _Emit for c in CHAINS}
    source = True
    realtime = True

    def tasks(self):
        return [_Emit(self, f"events.{c}", c) for c in self.config.chains]
