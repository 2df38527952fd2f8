"""The main job as the README states it: `.venv/bin/syndicate run` with the shipped engine.toml
(`[devnet] managed = true`), bounded with `--duration`.  It starts the three anvil chains, the
traffic and its rival, runs every role, executes at least one profitable arbitrage, and the
profit checks out on chain: for every chain and token, the executor owner's balance change
(read with balanceOf by the run before and after) equals the realised profit the ledger records
(read here from LMDB with `syndicate snapshot`), to the wei.  Exit 0, and nothing is left: no
supervisor, role, devnet or anvil process, no /dev/shm segment, no manifest or run directory.

Only --name and --state-dir are added to the README's command, so that the test never meets a
user's engine of the default name or its state."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from enginehelp import ROOT, _die_with_parent, _session_members

DURATION = 50      # seconds of trading; a big swap every ~4 s, half of them left to us


def _syndicate() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "syndicate"   # the README's command, where it is installed
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "engine.cli"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:data.rindex(b")") + 3] not in (b"Z", b"X")


def _ledger(store: Path) -> dict[str, dict[str, int]]:
    """chain -> token -> realised profit of the landed outcomes, from the ledger in LMDB."""
    r = subprocess.run([*_syndicate(), "snapshot", str(store), "export", "--db", "outcomes",
                        "--format", "jsonl"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    token, out = {}, {}
    for line in r.stdout.splitlines():
        v = json.loads(line)["value"]
        if v.get("token"):
            token[v["key"]] = v["token"].lower()
        if v["state"] == "landed":
            t = token[v["key"]]
            out.setdefault(v["chain"], {}).setdefault(t, 0)
            out[v["chain"]][t] += int(v["realised"])
    return out


def test_the_readme_main_job_trades_on_the_managed_devnet_and_leaves_nothing(tmp_path,
                                                                            unique_name):
    state = tmp_path / "state"
    manifest = state / "devnet" / unique_name / "manifest.json"
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([*_syndicate(), "run", "--duration", str(DURATION), "--name",
                                 unique_name, "--state-dir", str(state)], cwd=ROOT, stdout=out,
                                stderr=err, start_new_session=True, preexec_fn=_die_with_parent)
    pids: set[int] = set()
    try:
        t0 = time.monotonic()
        while not manifest.exists() and proc.poll() is None and time.monotonic() - t0 < 240:
            time.sleep(0.2)
        doc = json.loads(manifest.read_text())
        pids = {doc["pid"], *(c["anvil_pid"] for c in doc["chains"].values())}
        assert sorted(doc["chains"]) == ["arbitrum", "base", "polygon"]
        pids |= _session_members(proc.pid)
        rc = proc.wait(DURATION + 240)
    finally:
        if proc.poll() is None:           # a failure above: leave nothing either
            for pid in _session_members(proc.pid) | pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(10)
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert rc == 0, stderr[-3000:]
    assert "final summary" in stdout and "on chain" in stdout, stdout

    summary = json.loads((state / "log" / f"{unique_name}.summary.json").read_text())
    assert summary["mode"] == "live"
    assert summary["trades"]["landed"] >= 1, (summary["trades"], stderr[-3000:])
    ledger = _ledger(state / "lmdb" / unique_name)
    assert ledger and all(v > 0 for toks in ledger.values() for v in toks.values()), ledger
    onchain = {c: {t: d["change"] for t, d in toks.items()} for c, toks in summary["onchain"].items()}
    assert onchain == ledger                     # the owner received exactly what was recorded
    assert all(d["change"] == d["realised"] for toks in summary["onchain"].values()
               for d in toks.values())

    # nothing left behind
    time.sleep(0.5)
    assert not [p for p in pids if _alive(p)], [Path(f"/proc/{p}/cmdline").read_bytes()
                                                 for p in pids if _alive(p)]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"syn.{unique_name}.")]
    assert not manifest.parent.exists()
    assert not (state / "run" / unique_name).exists()
    assert "SYNDICATE_EXECUTOR_KEY" not in stdout
    from engine.devnet.managed import DEV_KEY
    for f in [out_path, err_path, *(f for f in state.rglob("*") if f.is_file())]:
        assert DEV_KEY.removeprefix("0x").encode() not in f.read_bytes(), f
