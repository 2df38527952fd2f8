"""The executor's contract optimisation: gas per route shape, measured on the chain.

    contract-optimisation (10 min)
        the newest approved decisions with their Action (`opportunities`, every agent)
        ──► per route shape (hop kinds and loan source: "v2-v3:balancer"), a few of them
        ──► eth_estimateGas of the exact calldata, from the contract's owner, at the block the
            agent priced (the state with the gap; a node that has pruned it says so)
        ──► `models/gas-by-shape`: {shape: {"units": the largest measured, "n", "static"}}

The agents' static estimate (engine/arb/profit.estimate_gas) ran short for some shapes on the
devnet (transactions out of gas at the limit: DEVELOPING.md, "The learning loop"); the agents
load this record (roles/learning.py, load-model) and their simulator reports the measured
units for the shape, so the Decider prices gas and sets the limit from them
(engine/arb/decision.py: a simulation's `gas_used` replaces the estimate).
"""
from __future__ import annotations

import time

import orjson

from engine.arb.wire import action_from_record
from engine.core.store.keys import prefix_bytes
from engine.core.tasks import Failed, Priority, Task, TaskContext

from ..tasks import RpcError, _rpc

GAS_KEY = "gas-by-shape"
SCAN = 2000            # newest opportunity records looked at per role and run


def gas_shape(hops: list, loan_source: str) -> str:
    """A route's gas shape: its hop kinds in order and its loan source ("v2-v3:balancer")."""
    return "-".join(str(k) for k in hops) + ":" + str(loan_source)


def action_shape(action) -> str:
    return gas_shape([h.kind.value for h in action.route.hops], action.loan.source.value)


def approved_decisions(store, n: int, skip=frozenset()) -> list[dict]:
    """Up to `n` of the newest approved decisions with an Action, every agent's (`opportunities`),
    leaving out those whose "role|event" key is in `skip`."""
    if store is None:
        raise Failed("the role has no store")
    out = []
    with store.read() as r:
        for role in r.prefixes("opportunities"):
            # newest first, a bounded scan: refusals far outnumber approvals, and this is
            # one step of the executor's background work
            for i, (_, raw) in enumerate(r.items("opportunities", prefix_bytes(role),
                                                 reverse=True)):
                if len(out) >= n or i >= SCAN:
                    break
                try:
                    rec = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and rec.get("approved") and rec.get("action") \
                        and decision_key(rec) not in skip:
                    out.append(rec)
    return out


def decision_key(rec: dict) -> str:
    """A decision's identity, as the executor's desk keys it."""
    return f"{rec.get('role') or rec.get('ring', '?')}|{rec.get('event')}"


class ContractGas(Task):
    name = "contract-optimisation"
    priority = Priority.LOW
    interval = 600.0
    OPTIONS = {"samples": (int, 200, "newest approved decisions looked at per run"),
               "per_shape": (int, 3, "eth_estimateGas calls per route shape per run"),
               "timeout": (float, 5.0, "seconds one call may take")}

    def __init__(self, store=None, chains=None, **kw):
        """chains: a callable -> {chain: (rpc url, contract address, caller, owner)}."""
        super().__init__(**kw)
        self.store, self.chains = store, chains or (lambda: {})

    def initial_state(self):
        return {"runs": 0, "shapes": {}, "failed": 0, "summary": ""}

    def _candidates(self) -> list[dict]:
        return approved_decisions(self.store, int(self.options["samples"]))

    def run(self, ctx: TaskContext):
        chains = self.chains() or {}
        if not chains:
            raise Failed("no chain with an rpc endpoint and an executor contract")
        recs = self._candidates()
        yield None
        per: dict[str, list] = {}
        for rec in recs:
            try:
                a = action_from_record(rec["action"])
            except (ValueError, KeyError, TypeError):
                continue
            if a.chain in chains and len(per.setdefault(action_shape(a), [])) < int(self.options["per_shape"]):
                per[action_shape(a)].append((a, rec))
        yield None
        from engine.chain.executor import encode_execute
        st = self.state
        measured: dict[str, list[int]] = {}
        statics: dict[str, list[int]] = {}
        for shape, items in per.items():
            for a, rec in items:
                url, contract, caller, *_ = chains[a.chain]
                tx = {"from": caller, "to": contract, "data": "0x" + encode_execute(a).hex()}
                block = rec.get("block")
                at = hex(block) if isinstance(block, int) and block > 0 else "latest"
                try:
                    units = yield from _rpc(url, "eth_estimateGas", [tx, at],
                                            float(self.options["timeout"]))
                    measured.setdefault(shape, []).append(int(units, 16))
                    statics.setdefault(shape, []).append(int(rec.get("gas_units") or 0))
                except (OSError, RpcError, ValueError, TypeError) as e:
                    st["failed"] += 1       # pruned state, a gap that never was: not a figure
                    st["last_error"] = f"{shape}: {e}"[:200]
                yield None
        if not measured and per:
            raise Failed(f"no route could be measured ({st.get('last_error', '')})")
        shapes = dict(st["shapes"])
        for shape, units in measured.items():
            old = shapes.get(shape) or {}
            shapes[shape] = {"units": max(max(units), int(old.get("units") or 0)),
                             "n": int(old.get("n") or 0) + len(units),
                             "static": sum(statics[shape]) // len(statics[shape])}
        st.update(runs=st["runs"] + 1, shapes=shapes, measured_at=round(time.time(), 3),
                  summary=", ".join(f"{k} {v['units']} (est {v['static']})"
                                    for k, v in sorted(shapes.items())) or "nothing to measure")
        if measured:
            rec = {"version": st["runs"], "measured_at": st["measured_at"], "by": ctx.role,
                   "how": "eth_estimateGas at the decision's block, the largest per shape",
                   "shapes": shapes}
            self.store.append_many("models", GAS_KEY, [rec])
            ctx.discover(self.name, {"kind": "gas-by-shape", **rec})
