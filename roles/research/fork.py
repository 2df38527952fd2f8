"""The executor's fork testing: candidate routes replayed on a local fork of their chain.

    fork-testing (30 min)
        the newest approved decisions with their Action not yet fork-tested (`opportunities`)
        ──► per chain ONE anvil: --fork-url <the chain's rpc> --fork-block-number <the
            decision's block>; `anvil_reset` moves it to the next decision's block
        ──► the caller impersonated (no key exists on the fork), eth_sendTransaction of the
            exact calldata, automined in block + 1 as its first transaction
        ──► its receipt: landed or reverted (the reason from its trace), gas used, the profit
            realised (Transfer logs to the owner) against the predicted one, to the wei
        ──► `models/fork-tests`: this run's routes with their verdicts ("exact", "differs",
            "reverted: why"), the gas used per route shape of every landed test so far
            (and of those that ran out of gas at the Action's limit: a lower bound), and the
            routes whose newest test reverted for another reason than gas (`failing`)

On the fork the transaction is alone after the gap: nobody back-runs it, so a revert or a
difference is the agent's model of the route being wrong, not competition.  The agents load
the record (roles/modelgate.py, load-model): the shape's gas used, measured in a mined
transaction, and contract-optimisation's eth_estimateGas units, the larger of the two where
both exist, price the route and set its gas limit; and a route in `failing` is refused
("fork-test: ...") for `fork_hold_s` after its test, until a later test of it lands.  Out of
gas is not a failing route: the measured gas raises its limit next time.

The fork anvil is the role's child (PR_SET_PDEATHSIG: it dies with the role, even by SIGKILL)
and is stopped at the end of every run, whichever way the run ends.  Waiting for it to answer
never blocks the role: eth_chainId is polled with short timeouts and `Wait`s between tries.
"""
from __future__ import annotations

import time

from engine.arb.wire import action_from_record
from engine.core.tasks import Failed, Priority, Task, TaskContext, Wait

from ..tasks import RpcError, _rpc
from .contract import action_shape, approved_decisions, decision_key

FORK_KEY = "fork-tests"
KEEP_TESTED = 500        # decision keys remembered as tested (the newest)
KEEP_FAILING = 200       # failing routes published (the newest)
FUNDS = hex(10**21)      # the caller's ether on the fork: gas money, never a token


def route_key(action) -> str:
    """A route: its chain, pools in order and loan source ("base:0xa…>0xb…:balancer")."""
    return f"{action.chain}:{'>'.join(h.pool.lower() for h in action.route.hops)}:" \
           f"{action.loan.source.value}"


def predicted_profit(action) -> int:
    """What the owner should receive (engine/chain/desk.py accept): out − amount in − loan fee."""
    return action.expected_out - action.amount_in - action.loan.fee


def verdict(status: int, realised: int, predicted: int, reason: str | None = None) -> str:
    if status != 1:
        return f"reverted: {reason or 'no reason given'}"
    return "exact" if realised == predicted else "differs"


def summary(routes: list[dict]) -> str:
    if not routes:
        return "nothing to test: no new approved decision with an Action"
    counts: dict[str, int] = {}
    for r in routes:
        v = r["verdict"].split(":")[0]
        counts[v] = counts.get(v, 0) + 1
    first = next((r["verdict"] for r in routes if r["verdict"] != "exact"), "")
    return f"{len(routes)} routes on a fork: " + ", ".join(
        f"{n} {v}" for v, n in sorted(counts.items())) + (f" ({first[:80]})" if first else "")


class ForkTest(Task):
    name = "fork-testing"
    priority = Priority.LOW
    interval = 1800.0
    OPTIONS = {"samples": (int, 3, "newest untested approved decisions replayed per run"),
               "timeout": (float, 10.0, "seconds one call may take (the fork reads its state "
                                        "from the chain's node as it goes)"),
               "start_timeout": (float, 30.0, "seconds the fork anvil may take to answer")}

    def __init__(self, store=None, chains=None, **kw):
        """chains: a callable -> {chain: (rpc url, contract address, caller, owner)}."""
        super().__init__(**kw)
        self.store, self.chains = store, chains or (lambda: {})
        self.fork = None            # the running fork anvil, if any (tests look at its pid)

    def initial_state(self):
        return {"runs": 0, "tested": [], "shapes": {}, "failing": {}, "failed": 0, "summary": ""}

    def run(self, ctx: TaskContext):
        chains = self.chains() or {}
        if not chains:
            raise Failed("no chain with an rpc endpoint and an executor contract")
        st = self.state
        todo: dict[str, list] = {}
        # oldest first (the list is newest first): of two tests of one route, the later
        # decision's is the newest word on it
        for rec in reversed(approved_decisions(self.store, int(self.options["samples"]),
                                               skip=frozenset(st["tested"]))):
            try:
                a = action_from_record(rec["action"])
            except (ValueError, KeyError, TypeError):
                continue
            block = rec.get("block")
            if a.chain in chains and isinstance(block, int) and block > 0:
                todo.setdefault(a.chain, []).append((block, a, rec))
        yield None
        routes, errors = [], []
        for chain, items in todo.items():
            items.sort(key=lambda x: x[0])
            try:
                yield from self._chain(chains[chain], items, routes, errors)
            except (OSError, RpcError, ValueError, TypeError) as e:
                errors.append(f"{chain} at {chains[chain][0]}: {e}"[:300])
        if errors:
            st["failed"] += len(errors)
            st["last_error"] = errors[-1]
        if errors and not routes:
            raise Failed("; ".join(errors)[:500])
        st["tested"] = (st["tested"] + [r["key"] for r in routes])[-KEEP_TESTED:]
        shapes = dict(st["shapes"])
        for r in routes:      # out of gas at its limit: a lower bound on what the shape needs
            if r["out_of_gas"] or not r["verdict"].startswith("reverted"):
                old = shapes.get(r["shape"]) or {}
                shapes[r["shape"]] = {"gas_used": max(r["gas_used"], int(old.get("gas_used") or 0)),
                                      "n": int(old.get("n") or 0) + 1}
        failing = dict(st.get("failing") or {})
        for r in routes:      # the newest test of a route decides (out of gas says nothing)
            if r["out_of_gas"]:
                continue
            failing.pop(r["route"], None)
            if r["verdict"].startswith("reverted"):
                failing[r["route"]] = {"verdict": r["verdict"][:200], "block": r["block"],
                                       "at": round(time.time(), 3), "key": r["key"]}
        failing = dict(list(failing.items())[-KEEP_FAILING:])
        st.update(runs=st["runs"] + 1, shapes=shapes, tested_at=round(time.time(), 3),
                  failing=failing,
                  summary=summary(routes) + (f"; {len(errors)} not tested" if errors else ""))
        if routes:
            rec = {"version": st["runs"], "tested_at": st["tested_at"], "by": ctx.role,
                   "how": "eth_sendTransaction of the exact calldata on an anvil fork at the "
                          "decision's block; gas used of landed tests and of those out of gas "
                          "at their limit (a lower bound), the largest per shape; failing: "
                          "routes whose newest test reverted, not out of gas",
                   "routes": routes, "shapes": shapes, "failing": failing,
                   "summary": st["summary"]}
            self.store.append_many("models", FORK_KEY, [rec])
            ctx.discover(self.name, {"kind": FORK_KEY, **rec})

    def _chain(self, setup, items: list, routes: list, errors: list):
        """One fork for one chain's decisions (oldest block first); stopped however it ends."""
        url, contract, caller, owner = setup
        timeout = float(self.options["timeout"])
        chain_id = int((yield from _rpc(url, "eth_chainId", [], timeout)), 16)
        from engine.devnet.anvil import Anvil, free_port
        fork = None
        try:
            for n, (block, a, rec) in enumerate(items):
                if fork is None:
                    self.fork = fork = Anvil(chain_id, free_port(), (
                        "--fork-url", url, "--fork-block-number", str(block),
                        "--no-storage-caching"))       # no fork cache under ~/.foundry
                    yield from self._ready(fork, url, block)
                else:      # back to the chain's state at this block: the last test undone
                    try:
                        yield from _rpc(fork.url, "anvil_reset", [{"forking": {
                            "jsonRpcUrl": url, "blockNumber": block}}], timeout)
                    except RpcError as e:
                        errors.append(f"{a.chain} block {block}: the node lacks it ({e})"[:300])
                        continue
                routes.append((yield from self._test(fork.url, a, rec, block, contract, caller,
                                                      owner, timeout)))
            yield from _halt(fork)
            fork = None
        finally:
            if fork is not None:       # an exception, or the generator closed: no yield here
                fork.stop()
            self.fork = None

    def _ready(self, fork, url: str, block: int):
        t0 = time.monotonic()
        deadline = t0 + float(self.options["start_timeout"])
        while True:
            if fork.proc.poll() is not None:
                fork._log.seek(0)
                tail = fork._log.read().decode(errors="replace").strip()[-300:]
                raise RpcError(f"the fork of {url} at block {block} did not start "
                               f"(anvil exited {fork.proc.returncode}: {tail})")
            try:
                if int((yield from _rpc(fork.url, "eth_chainId", [], 0.5)), 16) == fork.chain_id:
                    self.state["fork_ready_s"] = round(time.monotonic() - t0, 3)
                    return
            except (OSError, RpcError):
                pass
            if time.monotonic() > deadline:
                raise RpcError(f"the fork of {url} at block {block} did not answer within "
                               f"{self.options['start_timeout']:g} s")
            yield Wait(until=time.monotonic() + 0.05)

    def _test(self, fork: str, a, rec: dict, block: int, contract: str, caller: str, owner: str,
              timeout: float):
        from engine.chain.executor import encode_execute, trace_reason
        from engine.chain.outcomes import read_receipt
        yield from _rpc(fork, "anvil_impersonateAccount", [caller], timeout)
        yield from _rpc(fork, "anvil_setBalance", [caller, FUNDS], timeout)
        tx = {"from": caller, "to": contract, "data": "0x" + encode_execute(a).hex()}
        if a.gas_limit > 0:
            tx["gas"] = hex(a.gas_limit)        # the agent's limit: running out of it is a finding
        h = yield from _rpc(fork, "eth_sendTransaction", [tx], timeout)
        until = time.monotonic() + timeout
        while not isinstance(receipt := (yield from _rpc(fork, "eth_getTransactionReceipt", [h],
                                                         timeout)), dict):
            if time.monotonic() > until:          # automine mines it at once, in a moment
                raise RpcError(f"no receipt for {h} on the fork within {timeout:g} s")
            yield Wait(until=time.monotonic() + 0.02)
        facts = read_receipt(receipt, contract=contract, owner=owner, token=a.route.token)
        reason, starved = None, False
        if facts.status != 1:
            try:
                reason = trace_reason((yield from _rpc(fork, "debug_traceTransaction",
                                                       [h, {"tracer": "callTracer"}], timeout)))
            except (OSError, RpcError) as e:
                reason = f"no trace ({str(e)[:80]})"
            starved = bool(a.gas_limit) and facts.gas_used * 100 >= a.gas_limit * 95
            if starved:   # an inner call starved by the 63/64 rule fails as itself (TransferFailed)
                reason = f"{reason}; gas used {facts.gas_used} of its limit {a.gas_limit}: " \
                         "out of gas"
        want = predicted_profit(a)
        return {"key": decision_key(rec), "route": route_key(a), "chain": a.chain,
                "pools": [hp.pool.lower() for hp in a.route.hops], "loan": a.loan.source.value,
                "shape": action_shape(a), "block": block, "mined": facts.block,
                "verdict": verdict(facts.status, facts.realised, want, reason),
                "predicted": str(want), "realised": str(facts.realised),
                "gas_used": facts.gas_used, "gas_limit": a.gas_limit, "out_of_gas": starved}


def _halt(fork):
    """Stop the fork without blocking the role: SIGTERM, then poll; SIGKILL after 3 s."""
    if fork is None:
        return
    fork.proc.terminate()
    until = time.monotonic() + 3.0
    while fork.proc.poll() is None and time.monotonic() < until:
        yield Wait(until=time.monotonic() + 0.02)
    fork.stop()                  # reaps (kills if still there) and closes its log
