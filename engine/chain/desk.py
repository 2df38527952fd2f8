"""The executor's desk: one inbox record in, at most one signed transaction out, every step on
the ledger (engine/chain/outcomes.py) before the next one happens.

    record (an agent's approved opportunity: {"kind": "opportunity", "approved": true,
            "role", "event", "action": engine.arb.wire.action_record(...), "t_origin"})
      │ a duplicate (role, event)? ─────────────────────────────── ignored (counted)
      │ action_from_record: a malformed or tampered field ─────────► refused "bad action: …"
      │ stale: older than block_time × stale_factor, or past its deadline ─► refused "stale: …"
      │ its chain has no executor here, a pool we do not know ───────► refused
      │ the independent re-quote on the executor's replica disagrees ─► refused "re-quote: …"
      │ eth_call on "pending" with the exact calldata ───────────────► refused "simulation: …"
      │ paper mode ───────────────────────────────────────────────► paper (never signed)
      ▼ live
    fees (priority floor of the chain) ─► nonce ─► sign ─► ledger "signed" (tx hash, nonce),
    committed ─► submission policy (engine/chain/submit.py) ─► "sent" | "rejected"
      ▼ later, `poll_receipts` (the role's background task)
    receipt ─► "landed" (realised profit from its Transfer logs) | "reverted" (decoded reason)
    no receipt within receipt_timeout ─► "dropped" (or "replaced" if our nonce moved past it)

Restart: `start()` reads the ledger.  A "signed" or "sent" transaction is looked up by its hash
(known before it was sent): found → followed to its receipt; not found and only signed → it
never left ("dropped", never sent again).  The next nonce is the node's pending count, or past
every transaction still followed, whichever is higher.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import requests
from web3 import HTTPProvider, Web3

from engine.arb.wire import action_from_record
from engine.chain.executor import Executor as ExecutorContract, Simulation, decode_revert, encode_execute
from engine.chain.keys import live_refusal
from engine.chain.outcomes import FINAL, Ledger, read_receipt
from engine.chain.submit import SubmitPolicy

GWEI = 10**9
# The network's minimum priority fee (Polygon PoS refuses less than 25 gwei).
PRIORITY_FLOOR = {"polygon": 25 * GWEI}
BLOCK_TIME = {"arbitrum": 0.25, "base": 2.0, "polygon": 2.0}


@dataclass
class ChainSetup:
    chain: str
    rpc: str
    chain_id: int
    executor: str                     # the FlashArbExecutor address
    block_time: float = 2.0
    pools: frozenset = frozenset()    # known pools, lower case (empty: not checked)
    submit: dict = field(default_factory=dict)


@dataclass
class Pending:
    key: str
    chain: str
    tx_hash: str
    nonce: int
    token: str
    predicted: int
    sent_at: float
    private: bool = False      # sent where the public node cannot see it (its nonce counts)


class ChainDesk:
    """One chain: web3, the contract, the submission policy, the next nonce."""

    def __init__(self, setup: ChainSetup, signer, request_timeout: float):
        self.setup = setup
        self.w3 = Web3(HTTPProvider(setup.rpc, request_kwargs={"timeout": request_timeout}))
        self.signer = signer
        self.contract = ExecutorContract(self.w3, setup.executor)
        self.owner = self.contract.contract.functions.owner().call()
        self.contract.caller = signer.address if signer is not None else self.owner
        self.policy = SubmitPolicy.from_config(setup.chain, setup.chain_id, setup.submit,
                                               [setup.rpc], signer)
        self.nonce: int | None = None
        self.http = requests.Session()
        self.timeout = request_timeout

    def call(self, method: str, params: list) -> dict:
        """One JSON-RPC call, its whole answer (plain requests: web3's formatting cost ~20 ms a
        call here under load, the node itself ~10)."""
        r = self.http.post(self.setup.rpc, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                 "params": params}, timeout=self.timeout)
        r.raise_for_status()
        doc = r.json()
        if not isinstance(doc, dict):
            raise RuntimeError(f"{method}: not a JSON-RPC answer")
        return doc

    def rpc(self, method: str, params: list):
        doc = self.call(method, params)
        if doc.get("error"):
            err = doc["error"]
            raise RuntimeError(f"{method}: {err.get('message', err) if isinstance(err, dict) else err}")
        return doc.get("result")

    def simulate(self, action) -> Simulation:
        """eth_call of the exact calldata on "pending" from our sender: the contract's profit,
        or its decoded revert."""
        tx = {"from": self.contract.caller, "to": self.contract.address,
              "data": "0x" + encode_execute(action).hex()}
        doc = self.call("eth_call", [tx, "pending"])
        err = doc.get("error")
        if err:
            data = err.get("data") if isinstance(err, dict) else None
            if isinstance(data, dict):
                data = data.get("data")
            if isinstance(data, str) and data.startswith("0x"):
                return Simulation(False, 0, decode_revert(data))
            return Simulation(False, 0, str(err.get("message", err) if isinstance(err, dict) else err)[:200])
        res = str(doc.get("result") or "0x")
        if len(res) < 66:
            return Simulation(False, 0, f"eth_call returned {res[:80]!r}, not a profit")
        return Simulation(True, int(res[2:66], 16))

    def refusal(self) -> str | None:
        """Why this key must not trade here (live mode), or None."""
        me = self.signer.address
        allowed = self.contract.contract.functions.allowed(me).call()
        return live_refusal(me, self.rpc("web3_clientVersion", []), self.owner, allowed)

    def pending_count(self) -> int:
        return int(self.rpc("eth_getTransactionCount", [self.signer.address, "pending"]), 16)


class Desk:
    """Every chain the executor trades on, its ledger and what it still follows."""

    def __init__(self, setups: dict[str, ChainSetup], ledger: Ledger, *, signer=None,
                 stale_factor: float = 4.0, receipt_timeout: float = 30.0,
                 request_timeout: float = 3.0, log=None, crash_at: str = "", crash_flag: str = "",
                 validator=None, clock=time.time, mono_ns=time.monotonic_ns):
        self.setups, self.ledger, self.signer = setups, ledger, signer
        self.paper = signer is None
        self.stale_factor, self.receipt_timeout = stale_factor, receipt_timeout
        self.request_timeout = request_timeout
        self.log = log
        self.crash_at, self.crash_flag = crash_at, crash_flag
        self.clock, self.mono_ns = clock, mono_ns
        self.validator = validator        # action -> None (agrees) or why not: the re-quote
        self.chains: dict[str, ChainDesk] = {}
        self.down: dict[str, str] = {}          # chain -> why it cannot trade
        self.halted = ""                         # live mode refused: every action is refused
        self.seen: dict[str, None] = {}
        self.pending: dict[str, Pending] = {}
        self.counts = {"taken": 0, "duplicates": 0, "agent_refused": 0, "paper": 0, "signed": 0, "sent": 0,
                       "landed": 0, "reverted": 0, "rejected": 0, "dropped": 0, "replaced": 0,
                       "refused": 0}
        self.refused: dict[str, int] = {}
        self.profit: dict[str, dict] = {}       # chain -> {"predicted", "realised", "gas_wei"}
        self.by_token: dict[str, dict[str, int]] = {}   # chain -> token -> realised
        self.dedup_window = 100_000

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        for name, s in self.setups.items():
            try:
                self.chains[name] = ChainDesk(s, self.signer, self.request_timeout)
            except Exception as e:   # a node down or no contract there: that chain only
                self.down[name] = f"cannot reach the executor contract {s.executor} at {s.rpc}: " \
                                  f"{type(e).__name__}: {str(e)[:160]}"
        if not self.paper:
            for name, cd in self.chains.items():
                try:
                    why = cd.refusal()
                except Exception as e:
                    why = f"cannot check the key against {name}: {type(e).__name__}: {str(e)[:160]}"
                if why:
                    self.halted = f"{name}: {why}"
                    break
        history = self.ledger.history()
        for key, rec in history.items():
            self._remember(key)
            self._tally(rec)
        for rec in self.ledger.open_items(history):
            self._recover(rec)
        if not self.paper and not self.halted:
            for name, cd in self.chains.items():
                self._sync_nonce(name)

    def _recover(self, rec: dict) -> None:
        """A transaction the last incarnation signed or sent: never sent again."""
        cd = self.chains.get(rec.get("chain"))
        if cd is None:
            return
        h = rec.get("tx")
        try:
            found = cd.rpc("eth_getTransactionByHash", [h])
        except Exception:
            found = "unknown"        # the node is down: follow it, the receipt poll decides
        p = Pending(rec["key"], rec["chain"], h, int(rec.get("nonce", 0)), rec.get("token", ""),
                    int(rec["predicted"] if rec.get("predicted") is not None
                        else rec.get("simulated") or 0), self.clock(),
                    private=str(rec.get("endpoint", "")).startswith("private"))
        if found is None and rec.get("state") == "signed":
            self._final(p, "dropped", reason="signed, never sent (the executor stopped in "
                                             "between); not sent again")
            return
        self.pending[h] = p
        self._note("recovered", key=p.key, tx=h, state=rec.get("state"))

    def _sync_nonce(self, chain: str) -> None:
        """The next nonce: the node's pending count, reconciled with what the ledger says we
        handed to private endpoints (the node cannot count those).  Asked again before every
        send: a transaction dropped from the mempool leaves no gap behind it."""
        cd = self.chains[chain]
        try:
            node = cd.pending_count()
        except Exception as e:
            self._note("eth_getTransactionCount failed", chain=chain, error=str(e)[:120])
            if cd.nonce is None:
                self.down[chain] = f"eth_getTransactionCount failed: {str(e)[:120]}"
            return
        ours = [p.nonce + 1 for p in self.pending.values() if p.chain == chain and p.private]
        cd.nonce = max([node, *ours])

    # -- the inbox -----------------------------------------------------------------------------
    def _remember(self, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > self.dedup_window:
            del self.seen[next(iter(self.seen))]
        return True

    def take(self, rec: dict) -> dict | None:
        """One inbox record; the outcome record it produced (None: not an opportunity, or a
        duplicate; an agent's refusal gets an acknowledgement that is not on the ledger)."""
        if rec.get("kind") != "opportunity":
            return None
        key = f"{rec.get('role') or rec.get('ring', '?')}|{rec.get('event')}"
        if not self._remember(key):
            self.counts["duplicates"] += 1
            return None
        if not rec.get("approved"):     # acknowledged, not on the ledger (the agent records it)
            self.counts["agent_refused"] += 1
            return {"key": key, "state": "none", "reason": f"refused by the agent: {rec.get('code')}"}
        self.counts["taken"] += 1
        base = {"source": rec.get("role"), "event": rec.get("event"), "chain": rec.get("chain")}
        try:
            action = action_from_record(rec.get("action"))
        except ValueError as e:
            return self._refuse(key, base, f"bad action: {e}")
        base["chain"] = action.chain
        # what the agent predicts the contract keeps: out − repay (a V2 flash swap on hop 0
        # repays amount_in with no loan fee, any other loan amount_in + fee)
        predicted = action.expected_out - action.amount_in - action.loan.fee
        base.update(predicted=str(predicted),
                    expected_net=str(action.expected_profit),
                    min_profit=str(action.min_profit), token=action.route.token)
        if self.halted:
            return self._refuse(key, base, f"halted: {self.halted}")
        if action.deadline < self.clock():
            return self._refuse(key, base, f"stale: deadline {action.deadline} passed")
        if self.validator is not None:      # pure and cheap: before any node is asked
            why = self.validator(action)
            if why:
                return self._refuse(key, base, f"re-quote: {why}")
        setup, cd = self.setups.get(action.chain), self.chains.get(action.chain)
        if setup is None:
            return self._refuse(key, base, f"no executor contract configured on {action.chain}")
        if cd is None:
            return self._refuse(key, base, f"{action.chain} is down: {self.down.get(action.chain)}")
        t_origin = rec.get("t_origin")
        limit = setup.block_time * self.stale_factor
        if isinstance(t_origin, int) and t_origin > 0:
            age = (self.mono_ns() - t_origin) / 1e9
            if age > limit:
                return self._refuse(key, base, f"stale: {age:.3f} s old (> {limit:g} s: "
                                               f"{self.stale_factor:g} blocks of {setup.block_time:g} s)")
        if setup.pools:
            for h in action.route.hops:
                if h.pool.lower() not in setup.pools:
                    return self._refuse(key, base, f"unknown pool {h.pool} on {action.chain}")
        try:
            sim = cd.simulate(action)
        except Exception as e:   # the node failed the call itself
            return self._refuse(key, base, f"simulation: {type(e).__name__}: {str(e)[:160]}")
        if not sim.ok:
            return self._refuse(key, base, f"simulation: {sim.error}")
        base["simulated"] = str(sim.profit)
        if self.paper:
            rec = self._led(key, "paper", base)
            self._tally(rec)
            return rec
        return self._send(key, base, action, cd)

    def _send(self, key: str, base: dict, action, cd: ChainDesk) -> dict:
        chain = action.chain
        self._sync_nonce(chain)
        if cd.nonce is None:
            return self._refuse(key, base, f"{chain}: no nonce ({self.down.get(chain)})")
        prio = max(action.max_priority_fee_per_gas, PRIORITY_FLOOR.get(chain, 0))
        max_fee = action.max_fee_per_gas + (prio - action.max_priority_fee_per_gas)
        nonce = cd.nonce
        tx = {"type": 2, "chainId": cd.setup.chain_id, "nonce": nonce, "to": cd.contract.address,
              "value": 0, "data": "0x" + encode_execute(action).hex(), "gas": action.gas_limit,
              "maxFeePerGas": max_fee, "maxPriorityFeePerGas": prio}
        raw, tx_hash = self.signer.sign(tx)
        signed = self._led(key, "signed", {**base, "tx": tx_hash, "nonce": nonce,
                                            "from": self.signer.address,
                                            "max_fee_per_gas": str(max_fee),
                                            "max_priority_fee_per_gas": str(prio)})
        self.counts["signed"] += 1
        cd.nonce = nonce + 1
        self._crash("after-record")
        res = cd.policy.submit(raw, tx_hash, cd.setup.rpc)
        if not res.ok:
            self._sync_nonce(chain)        # nothing took it: the nonce is free again
            rec = self._led(key, "rejected", {"tx": tx_hash, "nonce": nonce, "chain": chain,
                                              "reason": f"rejected: {res.error}"[:600]})
            self._tally(rec)
            return rec
        self._crash("after-send")
        self.counts["sent"] += 1
        p = Pending(key, chain, tx_hash, nonce, action.route.token,
                    int(base["predicted"]),
                    self.clock(), private=res.endpoint.startswith("private"))
        self.pending[tx_hash] = p
        out = self._led(key, "sent", {"tx": tx_hash, "endpoint": res.endpoint, "chain": chain,
                                      **({"skipped": list(res.errors)} if res.errors else {})})
        return {**signed, **out}

    def _crash(self, point: str) -> None:
        """A fire drill (options crash_at / crash_flag): SIGKILL ourselves once, here."""
        if self.crash_at != point:
            return
        if self.crash_flag:
            if os.path.exists(self.crash_flag):
                return
            open(self.crash_flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    # -- receipts ------------------------------------------------------------------------------
    def poll_receipts(self) -> list[dict]:
        """Look up every followed transaction once; the outcomes that became final."""
        done = []
        for h, p in list(self.pending.items()):
            cd = self.chains.get(p.chain)
            if cd is None:
                continue
            try:
                receipt = cd.rpc("eth_getTransactionReceipt", [h])
            except Exception as e:   # the node is down: try again at the next poll
                self._note("receipt lookup failed", tx=h, error=str(e)[:120])
                continue
            if receipt:
                done.append(self._receipt(p, cd, receipt))
            elif self.clock() - p.sent_at > self.receipt_timeout:
                done.append(self._timeout(p, cd))
        return done

    def _receipt(self, p: Pending, cd: ChainDesk, receipt: dict) -> dict:
        facts = read_receipt(receipt, contract=cd.contract.address, owner=cd.owner, token=p.token)
        fields = {"block": facts.block, "gas_used": facts.gas_used,
                  "gas_cost_wei": str(facts.gas_cost_wei)}
        if facts.status == 1:
            return self._final(p, "landed", realised=facts.realised,
                               event_profit=facts.event_profit, **fields)
        return self._final(p, "reverted", reason=self._revert_reason(cd, h=p.tx_hash,
                                                                     block=facts.block), **fields)

    def _revert_reason(self, cd: ChainDesk, h: str, block: int) -> str:
        """Why a mined transaction reverted: its own trace (debug_traceTransaction, callTracer:
        the exact revert data), else its call replayed with eth_call on the state after its
        block (which has whatever moved ahead of it; its own revert changed nothing)."""
        try:
            trace = cd.rpc("debug_traceTransaction", [h, {"tracer": "callTracer"}])
            if isinstance(trace, dict):
                out = trace.get("output")
                if out and out != "0x":
                    return decode_revert(out)
                if trace.get("error"):      # out of gas, an invalid opcode: no revert data
                    return f"{trace['error']} (gas used {int(str(trace.get('gasUsed', '0x0')), 16)} " \
                           f"of {int(str(trace.get('gas', '0x0')), 16)})"
        except Exception:
            pass   # not every node traces: replay instead
        try:
            tx = cd.rpc("eth_getTransactionByHash", [h])
            call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
            doc = cd.call("eth_call", [call, hex(block)])
        except Exception as e:
            return f"reverted (the replay failed: {type(e).__name__})"
        err = doc.get("error")
        if not err:
            return "reverted on chain; its replay after the block passes"
        data = err.get("data") if isinstance(err, dict) else None
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
            return decode_revert(data)
        return f"reverted ({str(err.get('message', err) if isinstance(err, dict) else err)[:120]})"

    def _timeout(self, p: Pending, cd: ChainDesk) -> dict:
        try:
            tx = cd.rpc("eth_getTransactionByHash", [p.tx_hash])
            latest = int(cd.rpc("eth_getTransactionCount", [self.signer.address, "latest"]), 16)
        except Exception as e:
            tx, latest = "unknown", -1
            self._note("timeout lookup failed", tx=p.tx_hash, error=str(e)[:120])
        if tx is None and latest > p.nonce:
            out = self._final(p, "replaced", reason=f"nonce {p.nonce} was used by another transaction")
        else:
            where = "still pending" if tx not in (None, "unknown") else "not known to the node"
            out = self._final(p, "dropped", reason=f"no receipt within {self.receipt_timeout:g} s "
                                                   f"({where}); no longer followed")
        self._sync_nonce(p.chain)
        return out

    def _tally(self, rec: dict) -> None:
        """Count a final outcome in the status figures (also for the ledger's past ones)."""
        state, chain = rec.get("state"), rec.get("chain")
        if state not in FINAL:
            return
        self.counts[state] = self.counts.get(state, 0) + 1
        if state == "refused":
            head = str(rec.get("reason", "")).split(":", 1)[0]
            self.refused[head] = self.refused.get(head, 0) + 1
        if state in ("landed", "reverted"):
            pr = self.profit.setdefault(chain, {"predicted": 0, "realised": 0, "gas_wei": 0,
                                                "landed": 0, "reverted": 0})
            pr[state] += 1
            pr["gas_wei"] += int(rec.get("gas_cost_wei") or 0)
            if state == "landed":
                pr["predicted"] += int(rec.get("predicted") or 0)
                pr["realised"] += int(rec.get("realised") or 0)
                if rec.get("token"):    # /metrics and the run's summary: per chain and token
                    tok = self.by_token.setdefault(chain, {})
                    tok[rec["token"]] = tok.get(rec["token"], 0) + int(rec.get("realised") or 0)

    def _final(self, p: Pending, state: str, **fields) -> dict:
        self.pending.pop(p.tx_hash, None)
        if "realised" in fields and fields["realised"] is not None:
            fields["realised"] = str(fields["realised"])
        if fields.get("event_profit") is not None:
            fields["event_profit"] = str(fields["event_profit"])
        rec = self._led(p.key, state, {"tx": p.tx_hash, "chain": p.chain, "nonce": p.nonce,
                                       "token": p.token, "predicted": str(p.predicted), **fields})
        self._tally(rec)
        return rec

    # -- the ledger ----------------------------------------------------------------------------
    def _refuse(self, key: str, base: dict, reason: str) -> dict:
        rec = self._led(key, "refused", {**base, "reason": reason[:600]})
        self._tally(rec)
        return rec

    def _led(self, key: str, state: str, fields: dict) -> dict:
        rec = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1 << 63
                   else v) for k, v in fields.items()}
        rec["t"] = round(self.clock(), 6)
        out = self.ledger.append(key, state, **rec)
        if state in FINAL or state == "sent":
            self._note(f"execution {state}", key=key, **{k: rec[k] for k in
                       ("chain", "tx", "reason", "realised", "predicted") if rec.get(k) is not None})
        return out

    def _note(self, msg: str, **fields) -> None:
        if self.log is not None:
            self.log.info(msg, **{k: str(v)[:200] for k, v in fields.items()})

    def info(self) -> dict:
        c = self.counts
        mode = "paper" if self.paper else ("HALTED" if self.halted else "live")
        why = (" (" + ", ".join(f"{k} {n}" for k, n in sorted(self.refused.items())) + ")"
               if self.refused else "")
        summary = (f"{mode}: {c['taken']} taken, {c['paper']} simulated (paper), {c['sent']} sent, "
                   f"{c['landed']} landed, {c['reverted']} reverted, {c['refused']} refused{why}, "
                   f"{c['rejected']} rejected, {c['dropped']} dropped, {len(self.pending)} pending")
        for ch, pr in sorted(self.profit.items()):
            summary += f"; {ch}: realised {pr['realised']} of predicted {pr['predicted']}, " \
                       f"gas {pr['gas_wei']} wei"
        if self.halted:
            summary += f"; refused to trade live: {self.halted}"
        return {"summary": summary, "mode": mode, "counts": dict(c), "refused": dict(self.refused),
                "profit": {ch: {k: str(v) for k, v in d.items()} for ch, d in self.profit.items()},
                "profit_by_token": {ch: {t: str(v) for t, v in d.items()}
                                    for ch, d in self.by_token.items()},
                "pending": len(self.pending), "down": dict(self.down), "halted": self.halted,
                "endpoints": {ch: cd.policy.describe() for ch, cd in self.chains.items()}}
