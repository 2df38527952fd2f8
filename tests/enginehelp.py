"""Start a real engine (`syndicate run`) in its own session for a test, and clean up whatever
happens: the supervisor and every role are killed by process group and session, and the
engine's shared-memory segments are unlinked, on every exit path of the test."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.config import render

ROOT = Path(__file__).resolve().parent.parent
SYNDICATE = [sys.executable, "-m", "engine.cli"]

# Roles that do a little real background work, so tests do not load the machine.
LIGHT = {"tasks": {"checksum": {"interval": 0.2, "options": {"links_per_run": 500}}}}


def agent(chains, **kw) -> dict:
    return {"kind": "roles.agents:Agent", "chains": list(chains), **copy.deepcopy(LIGHT), **kw}


def default_roles(rate: float = 1.0) -> dict:
    return {
        "monitor-arbitrum": {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"],
                             "options": {"rate": rate}},
        "arbitrum-spotter": agent(["arbitrum"]),
        "base-analyst": agent(["base"]),
        "polygon-specialist": agent(["polygon"]),
        "flash-loan-executor": {**agent(["arbitrum"]), "kind": "roles.agents:Executor",
                                "subscribe": False, "inbox": "interrupt"},
        "alphago-coordinator": {**agent(["arbitrum"]), "kind": "roles.agents:Coordinator",
                                "subscribe": False, "inbox": "poll"},
    }


class Engine:
    def __init__(self, tmp: Path, name: str, roles: dict | None = None, **sections):
        self.tmp, self.name = tmp, name
        self.doc = {"engine": {"name": name, "state_dir": str(tmp / "state"), "grace": 5.0},
                    "supervisor": {"max_restarts": 20, "restart_window": 30.0}}
        for k, v in sections.items():
            self.doc[k] = {**self.doc.get(k, {}), **v}
        self.doc["roles"] = roles if roles is not None else default_roles()
        self.path = tmp / "engine.toml"
        self.write()
        self.proc: subprocess.Popen | None = None
        self.stderr_path = tmp / f"{name}.stderr"

    def write(self) -> None:
        self.path.write_text(render(self.doc))

    @property
    def run_dir(self) -> Path:
        return self.tmp / "state" / "run" / self.name

    @property
    def store_dir(self) -> Path:
        return self.tmp / "state" / "lmdb" / self.name

    def cli(self, *args, check=False, timeout=30) -> subprocess.CompletedProcess:
        return subprocess.run([*SYNDICATE, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start(self, wait: bool = True) -> "Engine":
        self.starts = getattr(self, "starts", 0) + 1
        if getattr(self, "_err", None):
            self._err.close()
        self.stderr_path = self.tmp / f"{self.name}.{self.starts}.stderr"
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([*SYNDICATE, "run", "-c", str(self.path)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        if wait:
            self.wait_running()
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def status(self) -> dict | None:
        r = self.cli("status", "--name", self.name, "--json", "-c", str(self.path))
        if r.returncode != 0:
            self.last_status_error = r.stderr
            return None
        return json.loads(r.stdout)

    def roles(self) -> dict[str, dict]:
        st = self.status()
        return {r["name"]: r for r in st["roles"]} if st else {}

    def wait_for(self, pred, timeout: float = 20.0, what: str = "condition", poll: float = 0.05,
                 allow_exit: bool = False):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = pred()
            except (KeyError, TypeError) as e:   # a role not (yet) in the status
                last = f"{type(e).__name__}: {e}"
            else:
                if last:
                    return last
            if self.proc is not None and self.proc.poll() is not None and not allow_exit:
                raise AssertionError(f"supervisor exited ({self.proc.returncode}) while waiting "
                                     f"for {what}:\n{self.stderr()[-3000:]}")
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}\n"
                             f"{self.stderr()[-3000:]}")

    def wait_running(self, timeout: float = 30.0) -> dict:
        enabled = [n for n, r in self.doc["roles"].items() if r.get("enabled", True)]

        def ok():
            st = self.status()
            if not st or st["supervisor_pid"] != self.proc.pid:
                return None
            rs = {r["name"]: r for r in st["roles"]}
            if all(n in rs and rs[n]["alive"] and rs[n]["state"] not in ("starting", "restarting")
                   for n in enabled):
                return rs
            return None
        return self.wait_for(ok, timeout, "every role running")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor did not exit within {timeout}s:\n"
                                 f"{self.stderr()[-3000:]}")

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            return self.wait_exit()
        return self.proc.returncode if self.proc else 0

    def role_pids(self) -> dict[str, int]:
        return {n: r["pid"] for n, r in self.roles().items()}

    def segments(self) -> list[str]:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"syn.{self.name}."))

    def cleanup(self) -> None:
        """Whatever state the test left: kill the session, unlink the segments."""
        pids = set()
        if self.proc is not None:
            pids.add(self.proc.pid)
        for f in (self.run_dir / "roles").glob("*.pid") if self.run_dir.exists() else []:
            try:
                pids.add(int(f.read_text().strip()))
            except ValueError:
                pass
        for pid in _session_members(self.proc.pid if self.proc else None) | pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for n in self.segments():
            try:
                os.unlink(f"/dev/shm/{n}")
            except FileNotFoundError:
                pass
        if getattr(self, "_err", None):
            self._err.close()


def _die_with_parent() -> None:
    """A test's engine stops (gracefully: SIGTERM) if the test runner itself is killed."""
    from engine.core.signals import set_parent_death_signal
    set_parent_death_signal(signal.SIGTERM)


def _session_members(sid: int | None) -> set[int]:
    if sid is None:
        return set()
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.getsid(int(d)) == sid:
                out.add(int(d))
        except (ProcessLookupError, PermissionError):
            pass
    return out


def syndicate_processes(name_fragment: str = "syndicate: ") -> list[tuple[int, str]]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if name_fragment in cmd:
                out.append((int(d), cmd.strip()))
    return out


def collect(e: "Engine", role: str, want: int, timeout: float = 120.0) -> tuple[list, int]:
    """Up to `want` decisions from the role's outbox ring (read from the oldest), and how many
    records the reading lost."""
    import orjson

    from engine.core.ring import Ring
    ring = Ring.attach(f"/syn.{e.name}.out.{role}")
    try:
        rd = ring.reader(31, start="oldest")
        out, lost = [], 0
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            b = rd.poll(4096)
            lost += b.lost
            out += [orjson.loads(r) for r in b.records]
            if not b.records:
                time.sleep(0.05)
        return out, lost
    finally:
        ring.close()
