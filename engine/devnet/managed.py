"""The devnet that `syndicate run` manages itself (`[devnet] managed = true`, the default
engine.toml): when it is on, what it runs, and proof that what the engine trades on is anvil.

    off_reason(cfg)      why the devnet stays off: managed = false, or the file names
                         endpoints of its own ([chains] manifest, [chains.<c>] rpc/ws/submit)
    ManagedDevnet.start  `syndicate devnet up --traffic R --rival S --manifest M` as a child
                         process (its own session, so Ctrl-C reaches only the supervisor; it
                         gets SIGTERM when its parent dies), ready once M names its pid
    .verify()            every chain answers `web3_clientVersion` "anvil…" with the devnet's
                         chain id, else DevnetError: the dev key is accepted only there
    .balances()          the executor owner's token balances per chain (the reconciliation)
    .stop()              SIGTERM (it stops its anvils), SIGKILL after a grace; the manifest's
                         directory removed

The child is followed through a pidfd: the supervisor reaps every child that exits
(waitpid(-1)), so its pid may be reaped and reused before we look; a pidfd names exactly that
process whatever happens to the pid.  The dev key itself (anvil's public account 1, the owner of
the devnet's executor contract) reaches the executor through the environment like any key
(DEV_KEY_ENV); engine/chain/keys.py refuses it on a node that is not anvil.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .anvil import ROOT, rpc
from .deploy import CHAINS

# anvil's (and hardhat's) public development mnemonic: its accounts are worthless anywhere but
# a devnet; account 1 owns the devnet's FlashArbExecutor (deploy.py)
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def dev_key(index: int = 1) -> str:
    """The private key of the devnet's account `index`, derived from the public mnemonic (so
    no key is written out in the code; engine/chain/keys.py refuses these keys off anvil)."""
    from eth_account import Account
    Account.enable_unaudited_hdwallet_features()
    return "0x" + Account.from_mnemonic(DEV_MNEMONIC,
                                        account_path=f"m/44'/60'/0'/0/{index}").key.hex()


DEV_KEY = dev_key(1)
DEV_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BALANCE_OF = "0x70a08231"
DEV_KEY_ENV = "SYNDICATE_EXECUTOR_KEY"   # where the executor role reads its key (its key_env)


class DevnetError(RuntimeError):
    """The managed devnet did not start, or is not anvil: the message says which and why."""


def off_reason(cfg) -> str | None:
    """None when `syndicate run` must start the devnet; else why not (for the log)."""
    if not cfg.devnet.get("managed"):
        return "[devnet] managed = false"
    if cfg.chains.get("manifest"):
        return "[chains] manifest names a devnet already up"
    for c, n in (cfg.networks or {}).items():
        named = [k for k in ("rpc", "ws") if n.get(k)]
        if (n.get("submit") or {}).get("endpoints"):
            named.append("submit.endpoints")
        if named:
            return f"[chains.{c}] names its own endpoints ({', '.join(named)})"
    return None


def chains_of(cfg) -> list[str]:
    """The chains the enabled roles use, in the devnet's order (all three by default)."""
    used = {c for r in cfg.roles.values() if r.enabled for c in r.chains}
    return [c for c in CHAINS if c in used] or list(CHAINS)


def _pdeath_term() -> None:
    """preexec_fn: SIGTERM this child when its parent dies (it then stops its anvils)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


class ManagedDevnet:
    def __init__(self, manifest: Path, log_path: Path, proc: subprocess.Popen, pidfd: int):
        self.manifest_path, self.log_path, self.proc, self.pidfd = manifest, log_path, proc, pidfd
        self.manifest: dict = {}
        self.t_ready = 0.0

    @classmethod
    def start(cls, manifest: Path, log_path: Path, *, chains: list[str], traffic: float,
              rival: float, seed: int = 0) -> "ManagedDevnet":
        manifest, log_path = Path(manifest), Path(log_path)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.unlink(missing_ok=True)       # a stale one names ports that are gone
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "engine.cli", "devnet", "up", "--chains", ",".join(chains),
                "--manifest", str(manifest), "--traffic", repr(float(traffic)),
                "--rival", repr(float(rival)), "--seed", str(int(seed))]
        env = {k: v for k, v in os.environ.items() if k != DEV_KEY_ENV}
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=_pdeath_term,
                                    start_new_session=True)
        return cls(manifest, log_path, proc, os.pidfd_open(proc.pid))

    def exited(self) -> bool:
        return self.pidfd >= 0 and bool(select.select([self.pidfd], [], [], 0)[0])

    def wait_ready(self, timeout: float = 240.0, stop_requested=lambda: False) -> dict:
        """The manifest, once the child has written it (deploy from the cache: seconds; a first
        deploy: ~30 s).  DevnetError if the child exits first or the time runs out."""
        t0 = time.monotonic()
        while True:
            if self.exited():
                raise DevnetError(f"the devnet exited before it was ready: {self.log_tail()}")
            try:
                doc = json.loads(self.manifest_path.read_text())
                if doc.get("pid") == self.proc.pid:
                    self.manifest, self.t_ready = doc, time.monotonic() - t0
                    return doc
            except (OSError, ValueError):
                pass
            if stop_requested():
                raise DevnetError("stopped before the devnet was ready")
            if time.monotonic() - t0 > timeout:
                raise DevnetError(f"the devnet was not ready after {timeout:.0f} s: "
                                  f"{self.log_tail()}")
            time.sleep(0.1)

    def verify(self, expected: list[str]) -> None:
        """Every chain is an anvil with the devnet's chain id: the only place the dev key may
        sign.  DevnetError naming the chain and what answered otherwise."""
        chains = self.manifest.get("chains") or {}
        for c in expected:
            m = chains.get(c)
            if not m:
                raise DevnetError(f"{c}: not in the devnet's manifest")
            url = m.get("rpc_url", "")
            try:
                client, cid = rpc(url, "web3_clientVersion"), int(rpc(url, "eth_chainId"), 16)
            except (OSError, RuntimeError, ValueError) as e:
                raise DevnetError(f"{c}: {url} does not answer: {e}") from None
            if not str(client).lower().startswith("anvil"):
                raise DevnetError(f"{c}: {url} is {client!r}, not anvil: the devnet's key is "
                                  "accepted only against anvil")
            if cid != CHAINS[c].chain_id:
                raise DevnetError(f"{c}: {url} has chain id {cid}, the devnet's is "
                                  f"{CHAINS[c].chain_id}")

    def balances(self) -> dict[str, dict[str, int]]:
        """chain -> token address (lower case) -> the executor owner's balance; a chain that
        does not answer is left out."""
        out = {}
        for c, m in (self.manifest.get("chains") or {}).items():
            owner = (m.get("accounts") or {}).get("executor_owner", DEV_ADDRESS)
            data = BALANCE_OF + owner.lower().removeprefix("0x").rjust(64, "0")
            try:
                out[c] = {t["address"].lower(): int(rpc(m["rpc_url"], "eth_call", [
                    {"to": t["address"], "data": data}, "latest"]), 16)
                    for t in (m.get("tokens") or {}).values()}
            except (OSError, RuntimeError, ValueError, KeyError, TypeError):
                continue
        return out

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        if self.pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
            if not select.select([self.pidfd], [], [], grace)[0]:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                select.select([self.pidfd], [], [], 5.0)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(1.0)       # ours to reap unless the supervisor's loop already did
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass
        os.close(self.pidfd)
        self.pidfd = -1
        shutil.rmtree(self.manifest_path.parent, ignore_errors=True)



