"""Who sheds load (issue 9, defect 3.5): an operator's `ctl ROLE shed` holds until the operator's
`unshed`, whatever the memory figure; the watchdog's own shed (soft memory limit) stays
automatic, and the operator's unshed does not undo it."""
from __future__ import annotations

import time

from enginehelp import agent


def shedding(e, role):
    return e.roles()[role]["shedding"]


def test_operator_shed_holds_until_unshed_and_the_watchdog_sheds_by_itself(engine_factory):
    e = engine_factory({"calm": agent(["base"]),
                        "heavy": agent(["base"], memory_soft="1MiB", memory_hard="4GiB")},
                       watchdog={"interval_ms": 50}).start()
    ctl = ("ctl", "-c", str(e.path))
    # the watchdog's own shed: "heavy" is always over its 1 MiB soft limit
    e.wait_for(lambda: shedding(e, "heavy"), 10, "the watchdog to shed heavy")
    assert not shedding(e, "calm")

    assert e.cli(*ctl, "calm", "shed").returncode == 0
    e.wait_for(lambda: shedding(e, "calm"), 10, "calm to shed")
    time.sleep(1.0)                               # 20 watchdog passes, calm far under its limit
    assert shedding(e, "calm"), "the watchdog undid the operator's shed"
    assert e.cli(*ctl, "calm", "unshed").returncode == 0
    e.wait_for(lambda: not shedding(e, "calm"), 10, "calm to stop shedding")

    assert e.cli(*ctl, "heavy", "unshed").returncode == 0
    time.sleep(0.5)
    assert shedding(e, "heavy"), "an operator's unshed undid the watchdog's memory shed"
    assert e.stop() == 0
