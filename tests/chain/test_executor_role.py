"""The executor role in a real engine on the devnet: `syndicate run` with `mode = "live"`, the
key in the environment, an ActionFeed role (roles/probe.py) publishing what an agent publishes,
and the executor as its own process — SIGKILLed on purpose between record and send and between
send and receipt.  Then every file the engine wrote, the snapshot and status output and this
test's own output are searched for the key."""
from __future__ import annotations

import json
import time

import orjson
from tradehelp import approved, gap, predicted

from enginehelp import LIGHT, Engine

# anvil's well-known dev key of account 1 (the devnet executor's owner): test-only
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
EXEC = "flash-loan-executor"


def make_engine(tmp_path, devnet, name, **options) -> Engine:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(devnet.manifest))
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    roles = {
        "feeder": {"kind": "roles.probe:ActionFeed", "subscribe": False,
                   "options": {"spool": str(spool)}},
        EXEC: {"kind": "roles.executor:Executor", "chains": ["arbitrum"], "subscribe": False,
               "inbox": "interrupt", "options": {"stale_factor": 400.0, **options},
               **LIGHT},
    }
    return Engine(tmp_path, name, roles, engine={"mode": "live"},
                  chains={"manifest": str(manifest)})


def feed(e: Engine, rec: dict, n: int) -> None:
    tmp = e.tmp / "spool" / f".{n:04d}.tmp"
    tmp.write_bytes(orjson.dumps({**rec, "t_origin": time.monotonic_ns()}))
    tmp.rename(e.tmp / "spool" / f"{n:04d}.json")


def outcomes(e: Engine) -> dict[str, dict]:
    """key -> its newest state, read with `syndicate snapshot` (engine running or not)."""
    r = e.cli("snapshot", str(e.store_dir), "export", "--db", "outcomes", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        rec = json.loads(line)
        v = rec.get("value", rec)
        out.setdefault(v["key"], []).append(v["state"])
    return out


def wait_state(e: Engine, key: str, state: str, timeout: float = 30.0):
    return e.wait_for(lambda: state in outcomes(e).get(key, []), timeout, f"{key} {state}")


def test_live_engine_lands_trades_survives_sigkill_and_never_leaks_the_key(
        arb, devnet, tmp_path, monkeypatch, capsys):
    c = arb
    monkeypatch.setenv("SYNDICATE_EXECUTOR_KEY", OWNER_KEY)
    owner = c.m["accounts"]["executor_owner"]
    usdc = c.token("USDC")
    count0 = c.w3.eth.get_transaction_count(owner)
    flag = tmp_path / "crash.flag"
    e = make_engine(tmp_path, devnet, "exe-live", crash_at="after-record", crash_flag=str(flag))
    try:
        # 1. SIGKILL between record and send: signed, never sent, never sent again
        e.start()
        pid0 = e.role_pids()[EXEC]
        pool = gap(c)
        first = approved(c, pool, role="arbitrum-spotter")
        feed(e, first, 1)
        key1 = f"arbitrum-spotter|{first['event']}"
        wait_state(e, key1, "dropped")
        assert flag.exists() and e.role_pids()[EXEC] != pid0          # it did die, once
        assert c.w3.eth.get_transaction_count(owner) == count0        # nothing went out
        e.stop()

        # 2. SIGKILL between send and receipt (a whole-engine restart in between)
        flag2 = tmp_path / "crash2.flag"
        e.doc["roles"][EXEC]["options"].update(crash_at="after-send", crash_flag=str(flag2))
        e.write()
        e.start()
        second = approved(c, pool, role="arbitrum-spotter")
        before = c.balance(usdc, owner)
        feed(e, second, 2)
        key2 = f"arbitrum-spotter|{second['event']}"
        wait_state(e, key2, "landed")
        assert flag2.exists()
        assert outcomes(e)[key2] == ["queued", "signed", "landed"]   # "sent" died with the process
        assert c.w3.eth.get_transaction_count(owner) == count0 + 1    # sent exactly once
        assert c.balance(usdc, owner) - before == predicted(second) > 0
        feed(e, second, 3)                                   # redelivered: a duplicate
        # 3. the next trade: a new gap, the next nonce, the predicted profit to the wei
        third = approved(c, gap(c), role="arbitrum-spotter")
        before = c.balance(usdc, owner)
        feed(e, third, 4)
        key3 = f"arbitrum-spotter|{third['event']}"
        wait_state(e, key3, "landed")
        assert c.w3.eth.get_transaction_count(owner) == count0 + 2
        assert c.balance(usdc, owner) - before == predicted(third) > 0
        info = e.wait_for(lambda: (e.roles()[EXEC]["info"] or {}).get("counts", {})
                          .get("landed") == 2 and e.roles()[EXEC]["info"], 10, "status info")
        assert info["mode"] == "live" and info["counts"]["duplicates"] >= 1
        assert int(info["profit"]["arbitrum"]["realised"]) == predicted(second) + predicted(third) \
            == int(info["profit"]["arbitrum"]["predicted"])
        status_text = e.cli("status", "-c", str(e.path)).stdout
        status_json = e.cli("status", "--json", "-c", str(e.path)).stdout
        assert "landed" in status_text
        ls = e.cli("snapshot", str(e.store_dir), "ls", "outcomes").stdout
        landed = [ln for ln in ls.splitlines() if key3 in ln and ln.split("\t")[2].startswith("landed")]
        assert landed and f"predicted={predicted(third)}" in landed[0] and \
            f"realised={predicted(third)}" in landed[0], ls
        assert e.stop() == 0
        exported = e.cli("snapshot", str(e.store_dir), "export", "--format", "jsonl").stdout
    finally:
        e.cleanup()
    # the key, in any spelling, is nowhere
    secret = OWNER_KEY[2:].lower()
    texts = {"status": status_text + status_json, "snapshot": ls + exported,
             "test output": "".join(capsys.readouterr())}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    for where, text in texts.items():
        low = text.lower()
        assert secret not in low and secret.upper() not in text, f"the key is in {where}"
    assert any(p.name == "data.mdb" for p in tmp_path.rglob("*"))     # LMDB was searched
    assert any(p.suffix == ".log" for p in tmp_path.rglob("*"))       # so was the log
