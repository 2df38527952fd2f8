"""engine/devnet/anvil.spawn_args: a child that dies with this process, and that does not start
at all when this process died before the child's PR_SET_PDEATHSIG was set (setpriv alone does
not look: an anvil started by a role SIGTERMed at that moment was left running)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from engine.devnet import anvil


def test_a_child_whose_parent_is_not_there_any_more_does_not_start(tmp_path):
    if not (anvil.SETPRIV and anvil.SH):
        pytest.skip("no setpriv here: the preexec_fn path does its own check")
    for parent, ran in ((None, True), (os.getppid(), False)):   # the pid it wants to see
        mark = tmp_path / f"ran-{ran}"
        pre, kw = anvil.spawn_args(parent)
        rc = subprocess.run([*pre, "touch", str(mark)], **kw).returncode
        assert (rc == 0) == ran and mark.exists() == ran, (parent, rc)


def test_the_child_dies_with_its_parent(tmp_path):
    """A parent SIGKILLed right after the spawn: its child (here `sleep 60`) goes too."""
    code = ("import subprocess, sys; from engine.devnet import anvil; pre, kw = anvil.spawn_args(); "
            "p = subprocess.Popen([*pre, 'sleep', '60'], **kw); print(p.pid, flush=True); "
            "import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=anvil.ROOT)
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.02)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
