"""The executor's desk on the devnet (engine/chain/desk.py): real anvil, the devnet's own
FlashArbExecutor (manifest `contracts.executor`, owned by dev account 1), a real LMDB ledger.
Every opportunity is real: a big swap opens a gap, engine/arb finds and prices it, and the
record is what an agent publishes.  Profits are asserted to the wei, gas never."""
from __future__ import annotations

import select
import time

import orjson
import pytest
from tradehelp import approved, gap, predicted

from engine.arb.wire import action_from_record
from engine.chain.desk import ChainSetup, Desk
from engine.chain.keys import LocalSigner
from engine.chain.outcomes import Ledger
from engine.core.store import Store

# anvil's well-known dev key of account 1 (the devnet executor's owner): test-only
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "lmdb")
    yield s
    s.close()


def setup_of(c, **kw) -> ChainSetup:
    return ChainSetup(c.name, c.m["rpc_url"], c.m["chain_id"], c.m["contracts"]["executor"],
                      block_time=kw.pop("block_time", 2.0),
                      pools=frozenset(p["address"].lower() for p in c.m["pools"]), **kw)


def desk(c, store, *, live=True, **kw) -> Desk:
    setups = kw.pop("setups", None) or {c.name: setup_of(c, **kw.pop("setup", {}))}
    d = Desk(setups, Ledger(store, "flash-loan-executor"),
             signer=LocalSigner(OWNER_KEY) if live else None, stale_factor=kw.pop("stale_factor", 100.0),
             **kw)
    d.start()
    return d


def wait_final(d: Desk, timeout: float = 20.0) -> list[dict]:
    out, end = [], time.monotonic() + timeout
    while d.pending and time.monotonic() < end:
        out += d.poll_receipts()
        time.sleep(0.05)
    assert not d.pending, "no outcome in time"
    return out


def ledger(store) -> list[dict]:
    with store.read() as r:
        return [rec for _, rec in r.records("outcomes", "flash-loan-executor")]


def tx_count(c, who: str) -> int:
    return c.w3.eth.get_transaction_count(who, "pending")


def test_landed_trade_pays_the_predicted_profit_to_the_wei(arb, store):
    c = arb
    rec = approved(c, gap(c))
    usdc_before = c.balance(c.token("USDC"), c.m["accounts"]["executor_owner"])
    d = desk(c, store)
    sent = d.take(rec)
    assert sent["state"] == "sent", sent
    (done,) = wait_final(d)
    assert done["state"] == "landed", done
    gained = c.balance(c.token("USDC"), c.m["accounts"]["executor_owner"]) - usdc_before
    assert gained == predicted(rec) == int(done["realised"]) == int(done["event_profit"]) \
        == int(sent["simulated"]) > 0
    states = [r["state"] for r in ledger(store)]
    assert states == ["queued", "signed", "sent", "landed"]
    # fees priced by the executor from the live base fee (Arbitrum: no priority fee), and a
    # deadline block within the staleness limit, whatever the Action bid
    assert int(sent["max_fee_per_gas"]) == 2 * int(sent["base_fee"]) and sent["max_priority_fee_per_gas"] == "0"
    assert sent["head_block"] < sent["deadline_block"] <= sent["head_block"] + 100
    assert 0 < sent["ms_sent"] and sent["ms_signed"] <= sent["ms_sent"]
    # the moment its request was on the node's socket: after signing, before the node's answer
    assert sent["ms_signed"] <= sent["ms_handed"] <= sent["ms_sent"]
    info = d.info()
    assert info["counts"]["landed"] == 1 and info["profit"][c.name]["realised"] == str(gained)
    assert info["presigned"] == 1       # signed while the node ran the eth_call
    assert d.take(rec) is None          # the same (role, event) again: a duplicate, ignored
    assert d.counts["duplicates"] == 1


def test_receipts_give_way_to_a_waiting_send_and_the_steps_are_timed(arb, store):
    """poll_receipts stops before a lookup when the sending thread has a send waiting (the
    transaction is looked up at the next poll); the "sent" record times every step of the
    sending thread, and they add up to record accepted → sent."""
    c = arb
    d = desk(c, store)
    sent = d.take(approved(c, gap(c)))
    assert sent["state"] == "sent", sent
    steps = sent["ms_phases"]
    assert list(steps) == ["wait", "head", "simulate", "nonce", "sign", "queued", "commit", "submit"]
    assert all(ms >= 0 for ms in steps.values())
    assert sum(steps.values()) == pytest.approx(sent["ms_sent"], abs=0.05)
    asked = []
    assert d.poll_receipts(yield_to=lambda: asked.append(1) or True) == [] and len(d.pending) == 1
    assert asked == [1]                 # asked once, before the first lookup
    (done,) = wait_final(d)
    assert done["state"] == "landed", done


def test_signed_during_the_simulation_and_again_when_the_nonce_moved_meanwhile(arb, store):
    """The transaction is signed for the nonce the desk expects while the node runs the
    eth_call; a transaction of ours sent elsewhere in between moves the node's count, so the
    one signed early is thrown away and the trade is signed again for the node's nonce."""
    c = arb
    owner = c.m["accounts"]["executor_owner"]
    d = desk(c, store)
    first = d.take(approved(c, gap(c)))
    assert first["state"] == "sent" and d.presigned == 1, first
    wait_final(d)
    c.w3.eth.send_transaction({"from": owner, "to": owner, "value": 0})   # not the desk's
    count = tx_count(c, owner)
    assert count == first["nonce"] + 2
    second = d.take(approved(c, gap(c, quote="USDT"), quote="USDT"))
    assert second["state"] == "sent" and second["nonce"] == count, second
    assert d.presigned == 1             # the early signature was for first["nonce"] + 1
    (done,) = wait_final(d)
    assert done["state"] == "landed", done
    assert c.w3.eth.get_transaction(second["tx"])["nonce"] == count


def test_a_signer_failing_during_the_simulation_is_asked_again_after_it(arb, store):
    """A signature that fails while the node simulates is not the simulation's failure: the
    desk signs again once the simulation passed, and the trade lands."""
    c = arb

    class Flaky(LocalSigner):
        calls = 0

        def sign(self, tx):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("signer busy")
            return super().sign(tx)
    d = Desk({c.name: setup_of(c)}, Ledger(store, "flash-loan-executor"), signer=Flaky(OWNER_KEY),
             stale_factor=100.0)
    d.start()
    sent = d.take(approved(c, gap(c)))
    assert sent["state"] == "sent" and d.presigned == 0 and Flaky.calls == 2, sent
    (done,) = wait_final(d)
    assert done["state"] == "landed", done


def test_front_run_trade_reverts_on_chain_and_costs_only_gas(arb, store):
    """The executor sends while the gap is open; a trader's swap that closes it is mined ahead
    of ours (higher priority fee, same block): ours reverts, and only gas is spent."""
    c = arb
    pool = gap(c)
    rec = approved(c, pool)
    owner = c.m["accounts"]["executor_owner"]
    eth_before = c.w3.eth.get_balance(owner)
    tokens_before = {s: c.balance(t["address"], owner) for s, t in c.m["tokens"].items()}
    d = desk(c, store)
    c.w3.provider.make_request("evm_setAutomine", [False])
    try:
        assert d.take(rec)["state"] == "sent"
        # the front-runner: buys the cheap WETH back first, bidding far above our priority fee
        fn = c.periphery.functions.swapV2(pool["address"], c.token("USDC"), 900_000 * 10**6,
                                          pool["fee"], c.deployer)
        fn.transact({"from": c.deployer, "maxPriorityFeePerGas": 10**11, "maxFeePerGas": 10**12})
        c.w3.provider.make_request("evm_mine", [])
    finally:
        c.w3.provider.make_request("evm_setAutomine", [True])
    (done,) = wait_final(d)
    assert done["state"] == "reverted", done
    assert done["reason"].startswith(("InsufficientProfit(", "RouteShort(")), done["reason"]
    assert c.w3.eth.get_balance(owner) == eth_before - int(done["gas_cost_wei"]) < eth_before
    assert {s: c.balance(t["address"], owner) for s, t in c.m["tokens"].items()} == tokens_before


def test_paper_mode_simulates_and_sends_nothing(arb, store):
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count, block = tx_count(c, owner), c.w3.eth.block_number
    d = desk(c, store, live=False)
    out = d.take(rec)
    assert out["state"] == "paper" and int(out["simulated"]) == predicted(rec)
    assert tx_count(c, owner) == count and c.w3.eth.block_number == block
    assert [r["state"] for r in ledger(store)] == ["queued", "paper"]


def tampered(rec: dict, **action) -> dict:
    a = orjson.loads(orjson.dumps(rec["action"]))
    for k, v in action.items():
        if k.startswith("loan_"):
            a["loan"][k[5:]] = v
        elif k == "pool0":
            a["route"][0]["pool"] = v
        else:
            a[k] = v
    return {**rec, "action": a, "event": rec["event"] + ":" + "-".join(action)}


def test_bad_input_is_recorded_with_its_reason_and_the_executor_goes_on(arb, store):
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    d = desk(c, store, stale_factor=10.0)     # 2 s blocks: stale after 20 s
    amount = int(rec["action"]["amount_in"])
    bad = [
        (tampered(rec, amount_in=str(amount * 3)), "bad action: action.amount_in"),
        (tampered(rec, amount_in=str(amount * 50), loan_amount=str(amount * 50)), "simulation: "),
        (tampered(rec, pool0="0x" + "ab" * 20), "unknown pool 0x" + "ab" * 20),
        (tampered(rec, gas_limit="lots"), "bad action: action.gas_limit"),
        ({**rec, "action": "not an object", "event": "x:1"}, "bad action: action: not an object"),
        (tampered(rec, deadline=int(time.time()) - 5), "stale: deadline"),
        ({**rec, "event": "x:2", "t_origin": max(1, time.monotonic_ns() - 30 * 10**9)},
         "stale: "),
        ({**rec, "event": "x:3", "chain": "base", "action": {**rec["action"], "chain": "base"}},
         "no executor contract configured on base"),
    ]
    for r, why in bad:
        out = d.take(r)
        assert out["state"] == "refused" and out["reason"].startswith(why), (why, out)
    # the Action's own fee bid is not used: the executor prices the fees from the base fee
    # a node that rejects the transaction: a gas limit over the block's (eth_call passes: it
    # needs far less than the block's limit)
    c.w3.provider.make_request("evm_setBlockGasLimit", [hex(2_000_000)])
    try:
        out = d.take({**tampered(rec, gas_limit=3_000_000), "event": rec["event"] + ":big"})
    finally:
        c.w3.provider.make_request("evm_setBlockGasLimit", [hex(30_000_000)])
    assert out["state"] == "rejected" and "gas" in out["reason"], out
    assert tx_count(c, owner) == count            # nothing of the above reached the chain
    # ... and the executor goes on: the good one lands, with the next nonce
    assert d.take(rec)["state"] == "sent"
    (done,) = wait_final(d)
    assert done["state"] == "landed" and done["nonce"] == count
    assert d.info()["refused"]["bad action"] == 3


def test_a_receipt_that_never_comes_is_dropped_and_the_nonce_reused(arb, store):
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    d = desk(c, store, receipt_timeout=1.0)
    c.w3.provider.make_request("evm_setAutomine", [False])
    try:
        assert d.take(rec)["state"] == "sent"
        (done,) = wait_final(d, timeout=10)
        assert done["state"] == "dropped" and "no receipt within 1 s" in done["reason"], done
        c.w3.provider.make_request("anvil_dropAllTransactions", [])
    finally:
        c.w3.provider.make_request("evm_setAutomine", [True])
    again = approved(c, {"address": rec["action"]["route"][0]["pool"]})
    sent = d.take(again)
    assert sent["state"] == "sent" and sent["nonce"] == count      # no gap left behind
    (done,) = wait_final(d)
    assert done["state"] == "landed"


def test_restart_after_signing_never_sends_and_after_sending_follows(arb, store):
    """A SIGKILL between record and send (simulated here by a ledger that says 'signed' for a
    transaction no endpoint ever got) and between send and receipt (a real sent transaction):
    the restarted desk sends nothing again and finds the outcome of the one that went out."""
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    led = Ledger(store, "flash-loan-executor")
    led.append("ghost|1", "signed", chain=c.name, tx="0x" + "11" * 32, nonce=count, token="0x")
    d1 = desk(c, store)
    assert d1.take(rec)["state"] == "sent"
    d2 = desk(c, store)                    # a new incarnation on the same ledger
    assert d2.take(rec) is None            # it remembers the key: never sent twice
    (done,) = wait_final(d2)
    assert done["state"] == "landed"
    hist = Ledger(store, "flash-loan-executor").history()
    assert hist["ghost|1"]["state"] == "dropped" and "never sent" in hist["ghost|1"]["reason"]
    assert tx_count(c, owner) == count + 1
    assert action_from_record(rec["action"]).chain == c.name


def test_a_transaction_whose_nonce_another_one_took_is_recorded_replaced(arb, store):
    """Someone holding the key (here: the node, which signs for the dev account) sends another
    transaction with our nonce and a higher fee before ours is mined: ours never lands."""
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    d = desk(c, store, receipt_timeout=1.0)
    c.w3.provider.make_request("evm_setAutomine", [False])
    try:
        sent = d.take(rec)
        assert sent["state"] == "sent"
        c.w3.eth.send_transaction({"from": owner, "to": owner, "value": 0, "nonce": sent["nonce"],
                                   "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 10**11})
        c.w3.provider.make_request("evm_mine", [])
    finally:
        c.w3.provider.make_request("evm_setAutomine", [True])
    (done,) = wait_final(d, timeout=10)
    assert done["state"] == "replaced" and f"nonce {sent['nonce']}" in done["reason"], done


def test_a_gas_limit_too_low_reverts_out_of_gas_and_says_so(arb, store):
    c = arb
    rec = approved(c, gap(c))
    d = desk(c, store)
    sent = d.take(tampered(rec, gas_limit=120_000))     # eth_call passes: it has all the gas
    assert sent["state"] == "sent", sent
    (done,) = wait_final(d)
    assert done["state"] == "reverted" and "gas" in done["reason"].lower(), done


def test_a_stuck_transaction_is_cancelled_at_its_nonce_and_the_next_one_follows(arb, store):
    """Sent, then the block gas limit drops under its gas limit: blocks are mined without it
    (anvil keeps it in its pool; one priced under a risen base fee it evicts).  After
    replace_after blocks the executor replaces it with a 0-value transfer to itself at the same
    nonce, fees bumped over the node's replacement rule and the new base fee; the cancel is
    mined, the trade is 'replaced', and the next trade takes the next nonce."""
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    d = desk(c, store, replace_after=2)
    mine = lambda: c.w3.provider.make_request("evm_mine", [])   # noqa: E731
    c.w3.provider.make_request("evm_setAutomine", [False])
    try:
        sent = d.take(rec)
        assert sent["state"] == "sent", sent
        c.w3.provider.make_request("evm_setBlockGasLimit", [hex(100_000)])
        for _ in range(2):
            mine()
        assert d.poll_receipts() == []                 # the cancel went out
        (cancelling,) = [r for r in ledger(store) if r["state"] == "cancelling"]
        assert cancelling["nonce"] == count and cancelling["tx"] == sent["tx"]
        assert int(cancelling["cancel_max_fee_per_gas"]) >= int(sent["max_fee_per_gas"]) * 110 // 100
        mine()
    finally:
        c.w3.provider.make_request("evm_setBlockGasLimit", [hex(30_000_000)])
        c.w3.provider.make_request("evm_setAutomine", [True])
    (done,) = wait_final(d)
    assert done["state"] == "replaced" and done["cancel"] == cancelling["cancel"], done
    assert c.w3.eth.get_transaction_receipt(done["cancel"])["status"] == 1
    assert c.w3.eth.get_transaction(done["cancel"])["nonce"] == count
    assert tx_count(c, owner) == count + 1
    again = approved(c, gap(c))
    nxt = d.take(again)
    assert nxt["state"] == "sent" and nxt["nonce"] == count + 1
    assert wait_final(d)[0]["state"] == "landed"
    assert d.info()["counts"]["replaced"] == 1


def test_a_transaction_the_node_dropped_is_recorded_dropped_and_its_nonce_reused(arb, store):
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    d = desk(c, store, replace_after=2)
    c.w3.provider.make_request("evm_setAutomine", [False])
    try:
        sent = d.take(rec)
        c.w3.provider.make_request("anvil_dropTransaction", [sent["tx"]])
        for _ in range(2):
            c.w3.provider.make_request("evm_mine", [])
        (done,) = d.poll_receipts()
    finally:
        c.w3.provider.make_request("evm_setAutomine", [True])
    assert done["state"] == "dropped" and "gone from the node's pool" in done["reason"], done
    assert not any(r["state"] == "cancelling" for r in ledger(store))   # nothing to replace
    again = approved(c, {"address": rec["action"]["route"][0]["pool"]})
    assert d.take(again)["nonce"] == count
    assert wait_final(d)[0]["state"] == "landed"


def test_profit_after_gas_at_the_executors_own_price_is_checked(arb, store):
    """The executor values gas at the fees it pays now: a trade the gas would eat is refused
    after its simulation, before anything is signed."""
    c = arb
    rec = approved(c, gap(c))
    owner = c.m["accounts"]["executor_owner"]
    count = tx_count(c, owner)
    d = desk(c, store, gas_rate=lambda action: 10**40)     # gas absurdly dear in the token
    out = d.take(rec)
    assert out["state"] == "refused" and out["reason"].startswith("gas: simulated profit"), out
    assert int(out["net_after_gas"]) < 0 and tx_count(c, owner) == count
    d2 = desk(c, store, gas_rate=lambda action: 1)         # and cheap: it goes
    assert d2.take({**rec, "event": rec["event"] + ":again"})["state"] == "sent"
    assert wait_final(d2)[0]["state"] == "landed"


def test_an_agents_deadline_block_already_passed_is_refused_by_the_simulation(arb, store):
    c = arb
    rec = approved(c, gap(c))
    head = c.w3.eth.block_number
    out = desk(c, store).take({**rec, "action": {**rec["action"], "deadline_block": head}})
    assert out["state"] == "refused" and out["reason"] == f"simulation: Expired({head + 1}, {head})", out


@pytest.mark.parametrize("batches", [True, False])
def test_the_nonce_comes_with_the_simulation_or_after_it_from_a_node_that_does_not_batch(
        arb, store, batches):
    """One request carries the eth_call and the pending count; a node that refuses batches
    (HTTP 400) gets the two calls one after the other, and the trade lands either way."""
    from standins import StandIn
    c = arb
    rec = approved(c, gap(c))
    with StandIn(c.m["rpc_url"], batches=batches) as node:
        s = setup_of(c)
        s.rpc = node.url
        d = desk(c, store, setups={c.name: s})
        node.received.clear()
        sent = d.take(rec)
        assert sent["state"] == "sent", sent
        methods = [m for m, _ in node.received]
        assert methods.count("eth_call") == 1 and methods.count("eth_getTransactionCount") == 1
        (done,) = wait_final(d)
        assert done["state"] == "landed", done


def test_a_slow_node_holds_the_sending_thread_never_the_switch(arb, store):
    """The node takes 1.5 s to answer eth_call: while it holds the first Action's simulation in
    the sending thread, accept() (the switch's part) takes the next Action at once."""
    from standins import StandIn

    from engine.chain.sender import Sender
    c = arb
    rec = approved(c, gap(c))
    with StandIn(c.m["rpc_url"], slow={"eth_call": 1.5}) as node:
        s = setup_of(c)
        s.rpc = node.url
        d = Desk({c.name: s}, Ledger(store, "flash-loan-executor"), signer=LocalSigner(OWNER_KEY),
                 stale_factor=100.0)
        d.start()
        sender = Sender(d, poll_s=0.05)
        sender.start()
        try:
            first, job = d.accept(rec)
            assert first["state"] == "queued"
            sender.put(job)
            end = time.monotonic() + 10
            while node.in_flight == 0 and time.monotonic() < end:
                time.sleep(0.01)
            second, job2 = d.accept({**rec, "event": rec["event"] + ":next"})
            assert node.in_flight == 1 and second["state"] == "queued"   # the node still holds #1
            sender.put(job2)
            assert job2.behind == "send"     # the thread was carrying the first one
            # what the executor's main thread waits on after its switch (RoleKind.hold):
            # not readable while a job handed over is unfinished
            fd = sender.hold_fd()
            assert fd is not None and not select.select([fd], [], [], 0)[0]
            done, end = [], time.monotonic() + 30
            while len([r for r in done if r["state"] in ("sent", "refused")]) < 2 \
                    and time.monotonic() < end:
                done += sender.drain()
                time.sleep(0.05)
            assert select.select([fd], [], [], 5.0)[0] and sender.hold_fd() is None
        finally:
            sender.stop()
    assert sender.hold_fd() is None
    states = {r["key"]: r["state"] for r in done if r["state"] in ("sent", "refused")}
    assert states[first["key"]] == "sent", done
    assert states[second["key"]] in ("sent", "refused")   # the gap may be closed by then
    assert {r["behind"] for r in done if r["state"] == "sent"} <= {"idle", "heads", "receipts",
                                                                   "send"}
