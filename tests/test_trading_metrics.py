"""`/metrics` carries the trading path's counters, from what the roles already publish in their
status info (roles/metrics.py AGENT and EXECUTOR): the agents' opportunities (approved, refused
per reason), the executor's outcomes by state, reverts, gas, and profit per chain and token.

A real engine (a synthetic monitor, an agent, the executor in paper mode with no chain to trade
on) is scraped over HTTP and parsed with prometheus_client's own parser; every counter lies
between `syndicate status --json` read just before and just after.  The profit series are
checked on the executor's info shape (Desk.info: uint256 figures as decimal strings), and on a
real devnet by tests/chain/test_main_job.py's figures through the same declarations."""
from __future__ import annotations

from engine.core.metrics import info_values
from enginehelp import agent
from metricshelp import free_port, scrape, value
from roles import metrics


def _between(before: float, got: float | None, after: float, what) -> None:
    assert got is not None and before <= got <= after, (what, before, got, after)


def test_trading_counters_agree_with_status(engine_factory):
    port = free_port()
    roles = {"monitor-arbitrum": {"kind": "roles.monitor:SyntheticSource", "chains": ["arbitrum"],
                                  "options": {"rate": 30.0, "impact_bps": 80}},
             "arbitrum-spotter": agent(["arbitrum"]),
             "flash-loan-executor": {**agent(["arbitrum"]), "kind": "roles.executor:Executor",
                                     "subscribe": "quiet", "inbox": "interrupt"}}
    e = engine_factory(roles=roles, metrics={"listen": f"127.0.0.1:{port}"})
    e.start()

    def opp(r):
        return ((r.get("arbitrum-spotter", {}).get("info") or {}).get("opportunities") or {})
    e.wait_for(lambda: opp(e.roles()).get("opportunities", 0) >= 3, 60, "priced opportunities")
    e.wait_for(lambda: (e.roles()["flash-loan-executor"]["info"] or {}).get("counts"), 30,
               "the executor's counts")
    before = e.roles()
    fams = scrape(f"http://127.0.0.1:{port}/metrics")
    after = e.roles()

    spot = "arbitrum-spotter"
    b, a = opp(before), opp(after)
    _between(b["opportunities"], value(fams, "syndicate_opportunities_total", role=spot),
             a["opportunities"], "opportunities")
    _between(b["approved"], value(fams, "syndicate_opportunities_approved_total", role=spot),
             a["approved"], "approved")
    assert a["refused_by_reason"], a        # synthetic records are no pool: refused, with a code
    for reason, n in a["refused_by_reason"].items():
        _between(b["refused_by_reason"].get(reason, 0),
                 value(fams, "syndicate_opportunities_refused_total", role=spot, reason=reason),
                 n, reason)
    assert fams["syndicate_opportunities"]["type"] == "counter"

    ex = "flash-loan-executor"
    cb, ca = before[ex]["info"]["counts"], after[ex]["info"]["counts"]
    for state, n in ca.items():
        _between(cb.get(state, 0), value(fams, "syndicate_executions_total", role=ex, state=state),
                 n, state)
    assert value(fams, "syndicate_executions_pending", role=ex) == after[ex]["info"]["pending"]
    assert fams["syndicate_executions"]["type"] == "counter"


def test_profit_per_chain_and_token_comes_from_the_executors_info_strings():
    info = {"counts": {"landed": 3, "reverted": 1}, "pending": 0,
            "profit": {"arbitrum": {"predicted": "9458449595006991", "realised":
                                    "9458449595006991", "gas_wei": "1407376", "landed": "2",
                                    "reverted": "1"}},
            "profit_by_token": {"arbitrum": {"0xweth": "9458449595006991", "0xusdc": "12"}}}
    got = {m.name: info_values(info, m.path) for m in metrics.EXECUTOR}
    assert sorted(got["profit_realised"]) == [(("arbitrum", "0xusdc"), 12.0),
                                              (("arbitrum", "0xweth"), 9458449595006991.0)]
    assert got["reverts"] == [(("arbitrum",), 1.0)]
    assert got["gas_spent_wei"] == [(("arbitrum",), 1407376.0)]
    assert sorted(got["executions"]) == [(("landed",), 3.0), (("reverted",), 1.0)]
    assert info_values({"profit_by_token": {"a": {"t": "12abc"}}}, "profit_by_token.*.*") == []
