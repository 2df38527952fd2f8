"""Anvil processes: start one per chain on 127.0.0.1, wait until it answers, stop it, and the
small JSON-RPC and web3 helpers the rest of engine/devnet uses.

Lifetime: every anvil is started with PR_SET_PDEATHSIG=SIGKILL (so it dies with the Python
thread that started it, even if that process is SIGKILLed) and in its own session; `stop()`,
Devnet's context manager, an atexit hook and the CLI's signal handling stop it on every other
path.  Start anvils from a thread that outlives them (normally the main thread).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it dies (even by SIGKILL)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    # the parent may already be gone before prctl ran: then nobody would ever kill us
    if os.getppid() == 1:
        os._exit(1)


# util-linux's setpriv sets PR_SET_PDEATHSIG and execs anvil (the signal survives execve): no
# preexec_fn, so Popen can vfork.  A preexec_fn forces a real fork, which copies the page
# tables of a big process: 10-12 ms in a role of 300 MB (the fork-testing task spawns anvil
# between switches), 0.4 ms with setpriv.  Without setpriv: the preexec_fn.
# setpriv does not look whether the parent died before its prctl (a role SIGTERMed within a
# few ms of starting its fork anvil left that anvil running, seen under CI load), so a shell
# between setpriv and anvil does, as _die_with_parent does: its $PPID is read after the prctl.
SETPRIV = shutil.which("setpriv")
SH = shutil.which("sh")
_ORPHAN_CHECK = 'test "$PPID" = "$1" || exit 1; shift; exec "$@"'


def spawn_args(parent: int | None = None) -> tuple[list[str], dict]:
    """(argv prefix, Popen keywords) that start a child which dies with this thread, or does
    not start at all if this process (`parent`, default os.getpid()) is already gone."""
    if SETPRIV and SH:
        return [SETPRIV, "--pdeathsig", "KILL", "--", SH, "-c", _ORPHAN_CHECK, "anvil",
                str(os.getpid() if parent is None else parent)], {}
    return [], {"preexec_fn": _die_with_parent}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def web3(url: str):
    # web3 is imported when a chain is first used: `syndicate devnet down` never pays for it
    from web3 import Web3
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))


class Anvil:
    """One anvil process on 127.0.0.1:port."""

    def __init__(self, chain_id: int, port: int, extra: tuple[str, ...] = ()):
        self.chain_id, self.port = chain_id, port
        self.url = f"http://127.0.0.1:{port}"
        # an anonymous file (unlinked at once): anvil's stderr, read only if it fails to start
        self._log = tempfile.TemporaryFile(prefix="syn-anvil-")
        pre, kw = spawn_args()
        self.proc = subprocess.Popen(
            [*pre, str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
             "--accounts", "10", "--balance", "1000000", "--silent",
             # a cached state is loaded with one anvil_loadState request of about 2 MB
             "--no-request-size-limit", *extra],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True, **kw)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"anvil on port {self.port} exited with {self.proc.returncode}: "
                                   f"{self._log.read().decode(errors='replace')[-2000:]}")
            try:
                if int(rpc(self.url, "eth_chainId", timeout=1.0), 16) == self.chain_id:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"anvil on port {self.port} not ready after {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
