"""The decision: take an opportunity (an `Action` for the executor) or let it go, with a reason.

    Opportunity ──► fresh?  (state block within max_block_lag of the head, age <= max_age_s)
                ──► simulate (a callable the caller injects; on the chain side, eth_call of the
                    executor with the exact calldata) ──► must succeed, and its profit net of gas
                    must clear the minimum: the *lower* of predicted and simulated profit counts
                ──► confidence: 0 if a check failed, else the share of the predicted profit the
                    simulation confirms (a learned model replaces it later) ──► >= 0.95
                ──► Action: route, amounts, loan, min_profit, gas bid, deadline

The contract's min_profit is what it must keep after repaying the loan (gas is paid outside the
contract): the gas cost at the bid's ceiling plus the configured minimum.  So if the trade lands
at all, it nets at least the minimum even if the base fee doubled; if the state moved against
it, it reverts instead of losing.  A route whose simulation loses is never approved.

Records (`Decision.record()`) are orjson-ready: every uint256 travels as a decimal string.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from engine.arb.profit import GasModel, convert
from engine.arb.search import Opportunity
from engine.arb.types import Action


@dataclass(frozen=True)
class Simulation:
    """What the simulator saw.  profit: the contract's gain (out − repay) in the route token;
    gas_used: units, if it measured them."""
    ok: bool
    profit: int | None = None
    gas_used: int | None = None
    reason: str = ""


Simulator = Callable[[Action], Simulation]


@dataclass(frozen=True)
class StateInfo:
    """Freshness of the pool state the opportunity was computed on."""
    block: int            # block of the newest state used
    head_block: int       # the chain's head as the caller knows it
    observed_at: float    # unix seconds when that state was received


@dataclass
class DecisionConfig:
    min_profit: int = 1                    # net of gas, in the profit token (per token below)
    min_profit_by_token: dict[str, int] = field(default_factory=dict)
    min_confidence: float = 0.95
    max_block_lag: int = 1                 # state may be at most this many blocks behind head
    max_age_s: float = 2.0
    deadline_s: int = 30                   # the executor drops the action after this
    gas_margin_pct: int = 20               # gas limit = estimate × (1 + margin)

    def min_for(self, token: str) -> int:
        return self.min_profit_by_token.get(token, self.min_profit)


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str
    confidence: float
    action: Optional[Action]
    opportunity: Opportunity
    simulation: Optional[Simulation]
    checks: dict

    def record(self) -> dict:
        o, p = self.opportunity, self.opportunity.profit
        rec = {
            "approved": self.approved, "reason": self.reason, "confidence": self.confidence,
            "checks": self.checks, "chain": o.chain, "trigger": o.trigger, "method": o.method,
            "route": [{"pool": h.pool, "kind": h.kind.value, "token_in": h.token_in,
                       "token_out": h.token_out, "fee": h.fee, "dex": h.dex} for h in o.route.hops],
            "loan": {"source": p.loan.source.value, "lender": p.loan.lender, "token": p.loan.token,
                     "amount": str(p.loan.amount), "fee": str(p.loan.fee)},
            "amount_in": str(p.amount_in), "amounts": [str(a) for a in p.amounts],
            "repay": str(p.repay), "gross": str(p.gross), "net": str(p.net),
            "gas_units": p.gas_units, "gas_cost_wei": str(p.gas_cost_wei),
            "gas_cost_token": str(p.gas_cost_token),
        }
        if self.simulation is not None:
            s = self.simulation
            rec["simulation"] = {"ok": s.ok, "reason": s.reason, "gas_used": s.gas_used,
                                 "profit": None if s.profit is None else str(s.profit)}
        if self.action is not None:
            a = self.action
            rec["action"] = {"amount_in": str(a.amount_in), "expected_out": str(a.expected_out),
                             "min_profit": str(a.min_profit), "expected_profit": str(a.expected_profit),
                             "gas_limit": a.gas_limit, "max_fee_per_gas": str(a.max_fee_per_gas),
                             "max_priority_fee_per_gas": str(a.max_priority_fee_per_gas),
                             "deadline": a.deadline, "event_id": a.event_id}
        return rec


class Decider:
    def __init__(self, gas: GasModel, config: DecisionConfig | None = None,
                 simulator: Simulator | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gas = gas
        self.config = config or DecisionConfig()
        self.simulator = simulator
        self.clock = clock

    def build_action(self, opp: Opportunity, graph, gas_units: int | None = None,
                     event_id: str = "") -> Action:
        """The fully specified action for `opp` (before any check)."""
        cfg = self.config
        p = opp.profit
        units = gas_units if gas_units is not None else p.gas_units
        gas_limit = units * (100 + cfg.gas_margin_pct) // 100
        worst_gas = convert(graph, self.gas.worst_cost_wei(gas_limit), self.gas.native_token,
                            opp.route.token)
        if worst_gas is None:
            raise ValueError(f"no pool prices {opp.route.token} in the native token")
        max_fee, prio = self.gas.bid()
        return Action(
            chain=opp.chain, route=opp.route, amount_in=p.amount_in, expected_out=p.amount_out,
            loan=p.loan, min_profit=worst_gas + cfg.min_for(opp.route.token),
            expected_profit=p.net, gas_limit=gas_limit, max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=prio, deadline=int(self.clock()) + cfg.deadline_s,
            event_id=event_id,
            notes={"repay": str(p.repay), "method": opp.method, "trigger": opp.trigger})

    def decide(self, opp: Opportunity, graph, state: StateInfo, event_id: str = "") -> Decision:
        cfg = self.config
        checks: dict = {}
        now = self.clock()
        lag, age = state.head_block - state.block, now - state.observed_at
        checks["block_lag"], checks["age_s"] = lag, round(age, 6)

        def refuse(reason: str, sim: Simulation | None = None, conf: float = 0.0) -> Decision:
            return Decision(False, reason, conf, None, opp, sim, checks)

        if lag > cfg.max_block_lag or lag < 0:
            return refuse(f"stale: state at block {state.block}, head {state.head_block} "
                          f"(max lag {cfg.max_block_lag})")
        if age > cfg.max_age_s:
            return refuse(f"stale: state is {age:.3f} s old (max {cfg.max_age_s} s)")
        minimum = cfg.min_for(opp.route.token)
        if opp.net < minimum:
            return refuse(f"predicted net profit {opp.net} < minimum {minimum}")
        try:
            action = self.build_action(opp, graph, event_id=event_id)
        except ValueError as e:
            return refuse(f"cannot build action: {e}")
        if self.simulator is None:
            return refuse("unsimulatable: no simulator")
        try:
            sim = self.simulator(action)
        except Exception as e:  # a simulator that throws is a simulation that failed
            return refuse(f"unsimulatable: simulator raised {type(e).__name__}: {e}")
        checks["simulated"] = sim.ok
        if not sim.ok:
            return refuse(f"simulation failed: {sim.reason or 'reverted'}", sim)
        if sim.profit is None:
            return refuse("unsimulatable: the simulation reported no profit", sim)
        # the worse of prediction and simulation counts; gas as simulated if measured
        units = sim.gas_used if sim.gas_used is not None else opp.profit.gas_units
        gas_token = convert(graph, self.gas.cost_wei(units), self.gas.native_token, opp.route.token)
        sim_net = sim.profit - (gas_token if gas_token is not None else 0)
        checks["simulated_net"] = str(sim_net)
        if gas_token is None or sim_net < minimum:
            return refuse(f"simulation loses: net {sim_net} < minimum {minimum}", sim)
        if sim.gas_used is not None:
            action = self.build_action(opp, graph, gas_units=sim.gas_used, event_id=event_id)
        net = min(opp.net, sim_net)
        confidence = agreement(opp.profit.gross, sim.profit)
        checks["confidence"] = confidence
        if confidence < cfg.min_confidence:
            return refuse(f"confidence {confidence} < {cfg.min_confidence}", sim, confidence)
        if net != action.expected_profit:
            action = replace(action, expected_profit=net)
        return Decision(True, "ok", confidence, action, opp, sim, checks)


def agreement(predicted: int, simulated: int) -> float:
    """The filter's confidence once freshness and simulation passed: how much of the predicted
    profit the simulation confirms (1.0 when it confirms all of it).  A simulation far below the
    prediction means our state or math disagrees with the chain's: don't trust either."""
    if predicted <= 0:
        return 0.0
    return max(0.0, min(1.0, simulated / predicted))
