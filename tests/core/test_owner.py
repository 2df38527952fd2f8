"""One live owner per engine name on the machine (issue 9, defect 3.1): shared-memory names are
global, so a second engine of the same name must refuse to start whatever its state dir, and a
dead owner's leftovers are still cleaned up by the next start."""
from __future__ import annotations

import os
import signal


def other_state_dir(e):
    """Same engine name as `e`, its own config file and state dir."""
    e.path = e.tmp / "other.toml"
    e.doc["engine"]["state_dir"] = str(e.tmp / "state-b")
    e.write()
    return e


def test_same_name_other_state_dir_refuses_while_the_owner_lives(engine_factory, unique_name):
    a = engine_factory(name=unique_name).start()
    segments, pids = a.segments(), a.role_pids()
    b = other_state_dir(engine_factory(name=unique_name))
    b.start(wait=False)
    code = b.wait_exit(30)
    err = b.stderr()
    assert code == 2, err
    assert "a supervisor of this name is running" in err
    assert f"pid {a.proc.pid}" in err and str(a.tmp / "state") in err
    assert "cleaned up" not in err
    assert a.segments() == segments                    # the live engine's memory is untouched
    assert a.role_pids() == pids and all(r["alive"] for r in a.roles().values())
    assert a.stop() == 0
    assert a.segments() == []


def test_a_dead_owner_is_cleaned_up_from_another_state_dir(engine_factory, unique_name):
    a = engine_factory(name=unique_name).start()
    pids = list(a.role_pids().values())
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(5)

    def gone():
        return not any(os.path.exists(f"/proc/{p}") and
                       "syndicate:" in open(f"/proc/{p}/cmdline").read() for p in pids)
    a.wait_for(gone, 10, "roles to exit on their own", poll=0.1, allow_exit=True)
    assert a.segments()
    b = other_state_dir(engine_factory(name=unique_name)).start()
    assert "cleaned up after a supervisor that did not stop cleanly" in b.stderr()
    assert b.stop() == 0
    assert b.segments() == []
