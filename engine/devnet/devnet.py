"""The devnet: anvil processes (one per chain id) with everything of deploy.py on them, and the
manifest that tells the engine and the tests where everything is.

    with Devnet.start(("arbitrum", "base"), seed=0) as net:   # free loopback ports
        net.rpc_url("arbitrum"); net.ws_url("base"); net.w3("base")
        net.manifest["chains"]["arbitrum"]["pools"]
        net.write_manifest("var/devnet/manifest.json")

Chains are prepared in parallel threads (deployed, or loaded from the state cache: deploy.py);
the anvils are started in the caller's thread, which they die with (anvil.py).
"""
from __future__ import annotations

import atexit
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from . import anvil
from .anvil import ANVIL, ROOT, Anvil, web3
from .deploy import CHAINS, prepare_chain


_LIVE: "set[Devnet]" = set()


@atexit.register
def _stop_all() -> None:
    for net in list(_LIVE):
        net.stop()


class Devnet:
    """Anvil processes with deployed contracts; see the module docstring.  Use `Devnet.start`."""

    def __init__(self) -> None:
        self.anvils: dict[str, Anvil] = {}
        self.manifest: dict[str, Any] = {"version": 1, "chains": {}}
        self.timings: dict[str, float] = {}
        self.how: dict[str, str] = {}   # per chain: "deployed" or "cached"
        self._w3: dict[str, Any] = {}

    @classmethod
    def start(cls, chains: Iterable[str] = ("arbitrum", "base", "polygon"), *,
              base_port: int | None = None, seed: int = 0, cache: bool = True,
              anvil_args: Iterable[str] = ()) -> "Devnet":
        """`anvil_args`: more anvil options, e.g. ("--prune-history", "256") for a long run
        (anvil writes old states to disk after a few hundred blocks and then mines ~7x slower)."""
        chains, anvil_args = tuple(chains), tuple(anvil_args)
        unknown = [c for c in chains if c not in CHAINS]
        if unknown or not chains:
            raise ValueError(f"unknown chain(s) {unknown or chains}; known: {', '.join(CHAINS)}")
        if not ANVIL.is_file():
            raise FileNotFoundError(f"anvil is not installed at {ANVIL}: run `npm ci` in {ROOT}")
        net = cls()
        _LIVE.add(net)
        try:
            t0 = time.monotonic()
            # started here, in the caller's thread: PR_SET_PDEATHSIG follows the starting thread
            for i, name in enumerate(chains):
                port = base_port + i if base_port is not None else anvil.free_port()
                net.anvils[name] = Anvil(CHAINS[name].chain_id, port, anvil_args)
            for i, (name, a) in enumerate(list(net.anvils.items())):
                for attempt in range(3):
                    try:
                        a.wait_ready()
                        break
                    except RuntimeError:
                        # a free port can be taken by someone else before anvil binds it
                        if base_port is not None or attempt == 2 or a.proc.poll() is None:
                            raise
                        a.stop()
                        a = net.anvils[name] = Anvil(CHAINS[name].chain_id, anvil.free_port(),
                                                     anvil_args)
            net.timings["anvil_ready"] = time.monotonic() - t0
            t1 = time.monotonic()
            with ThreadPoolExecutor(len(chains)) as pool:
                futures = {n: pool.submit(prepare_chain, n, net.anvils[n].url, seed, cache)
                           for n in chains}
                done = {n: f.result() for n, f in futures.items()}
            deployed = {n: d for n, (d, _) in done.items()}
            net.how = {n: how for n, (_, how) in done.items()}
            net.timings["deploy"] = time.monotonic() - t1
            net.manifest.update(seed=seed, pid=os.getpid())
            for name in chains:
                a = net.anvils[name]
                net.manifest["chains"][name] = {
                    "chain_id": a.chain_id, "port": a.port, "rpc_url": a.url,
                    "ws_url": f"ws://127.0.0.1:{a.port}", "anvil_pid": a.proc.pid, **deployed[name]}
                # the state every test starts from: mine nothing more, just record the block
            return net
        except BaseException:
            net.stop()
            raise

    # -- accessors
    def rpc_url(self, chain: str) -> str:
        return self.manifest["chains"][chain]["rpc_url"]

    def ws_url(self, chain: str) -> str:
        return self.manifest["chains"][chain]["ws_url"]

    def w3(self, chain: str):
        if chain not in self._w3:
            self._w3[chain] = web3(self.rpc_url(chain))
        return self._w3[chain]

    @property
    def chains(self) -> tuple[str, ...]:
        return tuple(self.manifest["chains"])

    def write_manifest(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=2) + "\n")
            os.replace(tmp, path)  # readers never see half a manifest
        finally:
            tmp.unlink(missing_ok=True)   # a stop in the middle leaves no .tmp behind
        return path

    # -- lifetime
    def stop(self) -> None:
        for a in self.anvils.values():
            a.stop()
        _LIVE.discard(self)

    def __enter__(self) -> "Devnet":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
