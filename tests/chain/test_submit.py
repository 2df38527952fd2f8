"""Submission policies on the devnet (engine/chain/submit.py), with local stand-ins for the paid
endpoints (tests/chain/standins.py: bloXroute's polygon_private_tx, Arbitrum's Timeboost express
lane) that forward to anvil, so every accepted transaction really lands; and the checks a live
key must pass before anything is signed."""
from __future__ import annotations

import pytest
from eth_account import Account
from standins import StandIn
from test_execution import OWNER_KEY, desk, setup_of, wait_final
from tradehelp import approved, gap, predicted

from engine.chain.keys import KeyError_, LocalSigner, live_refusal, load_signer
from engine.core.store import Store

STRANGER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil dev 2
AUCTION = "0x" + "a1" * 20


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "lmdb")
    yield s
    s.close()


def test_polygon_private_first_priority_floor_and_public_fallback(arb, chains, store, monkeypatch):
    p = chains["polygon"]
    monkeypatch.setenv("BLXR_AUTH", "test-auth-header")
    owner = p.m["accounts"]["executor_owner"]
    with StandIn(p.m["rpc_url"], auth="test-auth-header") as blx:
        eps = [{"kind": "private", "url": blx.url, "auth_env": "BLXR_AUTH"},
               {"kind": "public", "url": p.m["rpc_url"]}]
        d = desk(p, store, setup={"submit": {"endpoints": eps}})
        rec = approved(p, gap(p, "quickswap_v2", quote="USDC.e"), role="polygon-specialist",
                       quote="USDC.e")
        before = p.balance(p.token("USDC.e"), owner)
        sent = d.take(rec)
        assert sent["state"] == "sent" and sent["endpoint"] == f"private {blx.url}", sent
        method, got = blx.received[-1]
        assert method == "polygon_private_tx" and got["auth"] == "test-auth-header"
        assert not got["params"]["transaction"].startswith("0x")
        (done,) = wait_final(d)
        assert done["state"] == "landed"
        assert p.balance(p.token("USDC.e"), owner) - before == predicted(rec)
        tx = p.w3.eth.get_transaction(sent["tx"])
        assert tx["maxPriorityFeePerGas"] >= 25 * 10**9      # Polygon's floor, whatever the bid
        assert int(rec["action"]["max_priority_fee_per_gas"]) < 25 * 10**9
    # the private endpoint is gone: public, as the configured fallback, and the reason is kept
    rec2 = approved(p, gap(p, "quickswap_v2", quote="USDC.e"), role="polygon-specialist",
                    quote="USDC.e")
    sent = d.take(rec2)
    assert sent["state"] == "sent" and sent["endpoint"].startswith("public "), sent
    assert "unreachable" in sent["skipped"][0]
    # handed over when the public endpoint had its request, not at the failed private try
    assert sent["ms_signed"] <= sent["ms_handed"] <= sent["ms_sent"]
    assert wait_final(d)[0]["state"] == "landed"


def test_timeboost_express_lane_only_while_our_controller_holds_the_round(arb, store):
    c = arb
    owner = c.m["accounts"]["executor_owner"]
    with StandIn(c.m["rpc_url"], auction=AUCTION, controller=owner, round=7) as tb:
        eps = [{"kind": "timeboost", "url": tb.url, "auction": AUCTION},
               {"kind": "sequencer", "url": c.m["rpc_url"]}]
        # the round is read from the auction contract on the chain's RPC: the stand-in here
        d = desk(c, store, setup={"submit": {"endpoints": eps}})
        d.chains[c.name].setup.rpc = tb.url
        pool = gap(c)
        for seq in (0, 1):
            rec = approved(c, pool if seq == 0 else gap(c))
            sent = d.take(rec)
            assert sent["endpoint"] == f"timeboost {tb.url}", sent
            sub = [g for m, g in tb.received if m == "timeboost_sendExpressLaneTransaction"][-1]
            assert sub["params"][0]["sequenceNumber"] == hex(seq)
            assert sub["params"][0]["round"] == hex(7)
            assert wait_final(d)[0]["state"] == "landed"
        tb.controller = c.stranger          # the next round is someone else's: no bidding
        sent = d.take(approved(c, gap(c)))
        assert sent["endpoint"].startswith("sequencer "), sent
        assert "does not hold" in sent["skipped"][0]
        assert wait_final(d)[0]["state"] == "landed"


def test_live_key_refused_on_a_node_that_is_not_anvil_and_when_not_allowed(arb, store, tmp_path):
    c = arb
    with StandIn(c.m["rpc_url"], client_version="Geth/v1.14.11-stable/linux-amd64/go1.23") as geth:
        d = desk(c, store, setups={c.name: setup_of(c)})
        assert not d.halted                                  # anvil itself: the dev key is fine
        s = setup_of(c)
        s.rpc = geth.url
        from engine.chain.desk import Desk
        from engine.chain.outcomes import Ledger
        d = Desk({c.name: s}, Ledger(store, "x"), signer=LocalSigner(OWNER_KEY))
        d.start()
        assert "well-known development accounts" in d.halted and "Geth" in d.halted
        out = d.take(approved(c, gap(c)))
        assert out["state"] == "refused" and out["reason"].startswith("halted: ")
    d = Desk({c.name: setup_of(c)}, Ledger(store, "y"), signer=LocalSigner(STRANGER_KEY))
    d.start()
    assert "neither the executor contract's owner" in d.halted
    assert live_refusal(c.stranger, "anvil/v1.0", c.owner, allowed=True) is None


def test_keystore_and_environment_keys_never_show_the_key(tmp_path, monkeypatch):
    ks = tmp_path / "key.json"
    import json
    ks.write_text(json.dumps(Account.encrypt(OWNER_KEY, "pw-123")))
    monkeypatch.setenv("EXEC_PW", "pw-123")
    s = load_signer(keystore="key.json", password_env="EXEC_PW", base=tmp_path)
    assert s.address == Account.from_key(OWNER_KEY).address
    assert OWNER_KEY[2:] not in repr(s) + str(s)
    monkeypatch.setenv("EXEC_PW", "wrong")
    with pytest.raises(KeyError_, match="wrong password in EXEC_PW"):
        load_signer(keystore=str(ks), password_env="EXEC_PW")
    monkeypatch.delenv("SYNDICATE_EXECUTOR_KEY", raising=False)
    with pytest.raises(KeyError_, match="SYNDICATE_EXECUTOR_KEY"):
        load_signer()
    monkeypatch.setenv("SYNDICATE_EXECUTOR_KEY", "0x1234")
    with pytest.raises(KeyError_) as e:
        load_signer()
    assert "1234" not in str(e.value)
