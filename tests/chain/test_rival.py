"""The devnet's rival searcher: it back-runs big swaps on its pools at once, with a real flash-loan
arbitrage from its own account, and what we would have sent on the state before it then fails."""
from __future__ import annotations

from engine.arb.decision import Decider, DecisionConfig


def test_the_rival_takes_the_gap_first(devnet, arb):
    from engine.devnet import Traffic
    from engine.devnet.rival import Rival
    rival = Rival(devnet.manifest, chains=["arbitrum"], share=1.0, react=1.0, seed=1)
    us = Rival(devnet.manifest, chains=["arbitrum"], share=1.0, react=0.0, seed=2)  # our view
    me, them = us.sides["arbitrum"], rival.sides["arbitrum"]
    assert them.account != arb.deployer and len(rival.pools("arbitrum")) == len(arb.m["pools"])
    t = Traffic(devnet.manifest, rate=50, seed=5, chains=["arbitrum"])
    ours = []
    for _ in range(4):
        rec = t.step(big=True)                 # no rival yet: we see the gap first
        us._catch_up(me)
        opps = [o for o in me.search.on_event([rec.pool.lower()]) if o.net > 0]
        if not opps:
            continue
        d = Decider(me.search.gas, DecisionConfig(min_profit=1))
        action = d.build_action(opps[0], me.book.graph)
        sim = me.executor.simulate(action, estimate_gas=True)
        assert sim.ok and sim.profit > 0, sim
        took = rival.after(rec)                # now the rival reacts, first
        assert took is not None and took["status"] == 1 and took["profit"] > 0, took
        after = me.executor.simulate(action)
        assert not after.ok and after.error, after     # our trade would revert: gap gone
        ours.append(after.error)
    assert len(ours) >= 2, "the big swaps opened too few gaps"
    st = rival.statistics()["arbitrum"]
    assert st["landed"] == len(ours) and st["reverted"] == 0 and st["profit"]


def test_rival_settings_are_checked():
    import pytest
    from engine.devnet.rival import Rival
    with pytest.raises(ValueError, match="share"):
        Rival({"chains": {}}, share=0)
    with pytest.raises(ValueError, match="react"):
        Rival({"chains": {}}, react=1.5)
