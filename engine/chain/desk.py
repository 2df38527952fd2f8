"""The executor's desk: one inbox record in, at most one signed transaction out, every step on
the ledger (engine/chain/outcomes.py) before the next one happens.

    record (an agent's approved opportunity: {"kind": "opportunity", "approved": true,
            "role", "event", "action": engine.arb.wire.action_record(...), "t_origin"})
    accept() ─ in the role's switch: pure checks, no node asked ─────────────────────────────
      │ a duplicate (role, event)? ─────────────────────────────── ignored (counted)
      │ action_from_record: a malformed or tampered field ─────────► refused "bad action: …"
      │ stale: older than block_time × stale_factor, or past its deadline ─► refused "stale: …"
      │ its chain has no executor here, a pool we do not know ───────► refused
      │ the independent re-quote on the executor's replica disagrees ─► refused "re-quote: …"
      ▼ ledger "queued" (not waited for) ─► a Job for the sending thread (engine/chain/sender.py)
    carry() ─ in the sending thread ───────────────────────────────────────────────────────
      │ the head (number, base fee) ─► deadline block = head + the blocks left of the action's
      │ staleness limit; EIP-1559 fees from the live base fee and the gas tasks' priority
      │ eth_call on "pending" with the exact calldata (live: one JSON-RPC batch with our
      │   pending transaction count, the nonce; while the node works, the transaction is
      │   signed for the nonce we expect) ───────────────────────────► refused "simulation: …"
      │ simulated profit − gas at those fees (valued on the replica) ≤ 0 ─► refused "gas: …"
      │ paper mode ───────────────────────────────────────────────► paper (never signed)
      ▼ live
    nonce ─► sign (unless signed during the eth_call, for this nonce) ─► ledger "signed"
    (tx hash, nonce), committed ─► submission policy (engine/chain/submit.py) ─► "sent" |
    "rejected"
      ▼ later, `poll_receipts` (engine/chain/tracker.py, the same thread)
    "landed" | "reverted" | cancelled after replace_after blocks ("replaced") | "dropped"

Restart: `start()` reads the ledger.  A "signed" or "sent" transaction is looked up by its hash
(known before it was sent): found → followed to its receipt; not found and only signed → it
never left ("dropped", never sent again); "queued" was never signed ("dropped").  The next
nonce is the node's pending count, or past every transaction still followed, whichever is higher.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace

from engine.arb.wire import action_from_record
from engine.chain.chaindesk import (BLOCK_TIME, GWEI, PRIORITY_FLOOR, ChainDesk, ChainSetup,  # noqa: F401
                                    price_fees)
from engine.chain.executor import encode_execute
from engine.chain.outcomes import FINAL, Ledger
from engine.chain.tracker import Pending, Tracking


@dataclass
class Job:
    """An accepted Action on its way to the sending thread."""
    key: str
    base: dict                  # the ledger fields so far
    action: object              # engine.arb.types.Action
    t_origin: int | None        # the event's monotonic ns (its age decides staleness)
    t_accept: int               # monotonic ns when the switch accepted it
    rate: int | None = None     # route-token units per 10**18 wei (the replica's price), or None
    queued: object = None       # the store's job committing "queued"
    t_queued: int = 0           # monotonic ns when accept() returned it
    phases: dict = field(default_factory=dict)   # step -> monotonic ns when it ended (carry)
    behind: str = ""            # what the sending thread was doing when it was handed over

    def phase_ms(self, t0: int) -> dict:
        """Each step's own ms, in the order they ended, from t0 (the first step's start)."""
        out, prev = {}, t0
        for name, t in self.phases.items():
            out[name] = round((t - prev) / 1e6, 3)
            prev = t
        return out


class Desk(Tracking):
    """Every chain the executor trades on, its ledger and what it still follows."""

    def __init__(self, setups: dict[str, ChainSetup], ledger: Ledger, *, signer=None,
                 stale_factor: float = 4.0, receipt_timeout: float = 30.0,
                 request_timeout: float = 3.0, log=None, crash_at: str = "", crash_flag: str = "",
                 validator=None, gas_rate=None, replace_after: int = 3,
                 clock=time.time, mono_ns=time.monotonic_ns):
        self.setups, self.ledger, self.signer = setups, ledger, signer
        self.paper = signer is None
        self.stale_factor, self.receipt_timeout = stale_factor, receipt_timeout
        self.request_timeout = request_timeout
        self.replace_after = replace_after       # blocks without a receipt before a cancel
        self.log = log
        self.crash_at, self.crash_flag = crash_at, crash_flag
        self.clock, self.mono_ns = clock, mono_ns
        self.validator = validator        # action -> None (agrees) or why not: the re-quote
        self.gas_rate = gas_rate          # action -> route-token units per 1e18 wei, or None
        self.chains: dict[str, ChainDesk] = {}
        self.down: dict[str, str] = {}          # chain -> why it cannot trade
        self.halted = ""                         # live mode refused: every action is refused
        self.seen: dict[str, None] = {}
        self.pending: dict[str, Pending] = {}
        self.counts = {"taken": 0, "duplicates": 0, "agent_refused": 0, "queued": 0, "paper": 0,
                       "signed": 0, "sent": 0, "landed": 0, "reverted": 0, "rejected": 0,
                       "dropped": 0, "replaced": 0, "refused": 0}
        self.refused: dict[str, int] = {}
        self.presigned = 0      # sends whose signature was made during their eth_call
        self.profit: dict[str, dict] = {}       # chain -> {"predicted", "realised", "gas_wei"}
        self.by_token: dict[str, dict[str, int]] = {}   # chain -> token -> realised
        self.dedup_window = 100_000
        self._lock = threading.Lock()           # the counts: the switch and the sending thread
        self._signing: dict[str, str] = {}      # key -> tx hash: signed, its send not finished

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

    def _sync_nonce(self, chain: str, node: int | None = None) -> None:
        """The next nonce: the node's pending count (`node` if the caller just read it, as
        carry() does beside its eth_call), reconciled with what the ledger says we handed to
        private endpoints (the node cannot count those).  Asked again before every send: a
        transaction dropped from the mempool leaves no gap behind it."""
        cd = self.chains[chain]
        try:
            if node is None:
                node = cd.pending_count()
        except Exception as e:
            self._note("eth_getTransactionCount failed", chain=chain, error=str(e)[:120])
            if cd.nonce is None:
                self.down[chain] = f"eth_getTransactionCount failed: {str(e)[:120]}"
            return
        ours = [p.nonce + 1 for p in list(self.pending.values()) if p.chain == chain and p.private]
        cd.nonce = max([node, *ours])

    @staticmethod
    def head_max_age(setup: ChainSetup) -> float:
        """How old a head may be for the fees and the deadline block: half a block."""
        return min(setup.block_time / 2, 1.0)

    def refresh_heads(self) -> float:
        """Read every chain's head that is older than it may be at a send (the sending
        thread, when idle: a send then finds it fresh and saves a round trip); the seconds
        until the next one should be read."""
        wait = 1.0
        for name, cd in list(self.chains.items()):
            limit = self.head_max_age(cd.setup)
            try:
                cd.read_head(max_age=limit * 0.6)
            except Exception as e:   # the node is down: the send will say so
                self._note("head lookup failed", chain=name, error=str(e)[:120])
            wait = min(wait, limit * 0.5)
        return max(wait, 0.02)

    @staticmethod
    def priority_floor(chain: str) -> int:
        return PRIORITY_FLOOR.get(chain, 0)

    # -- the inbox (the switch) ----------------------------------------------------------------
    def _remember(self, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > self.dedup_window:
            del self.seen[next(iter(self.seen))]
        return True

    def take(self, rec: dict) -> dict | None:
        """accept() and carry() in the caller's thread: the outcome record (tests, benches)."""
        out, job = self.accept(rec)
        return self.carry(job) if job is not None else out

    def accept(self, rec: dict) -> tuple[dict | None, Job | None]:
        """One inbox record, checked without asking any node: (its record, a Job for the
        sending thread or None).  The record is None for what is not an opportunity and for a
        duplicate; an agent's refusal gets an acknowledgement that is not on the ledger."""
        if rec.get("kind") != "opportunity":
            return None, None
        t_accept = self.mono_ns()
        key = f"{rec.get('role') or rec.get('ring', '?')}|{rec.get('event')}"
        if not self._remember(key):
            self._count("duplicates")
            return None, None
        if not rec.get("approved"):     # acknowledged, not on the ledger (the agent records it)
            self._count("agent_refused")
            return {"key": key, "state": "none",
                    "reason": f"refused by the agent: {rec.get('code')}"}, None
        self._count("taken")
        base = {"source": rec.get("role"), "event": rec.get("event"), "chain": rec.get("chain")}
        # CLOCK_MONOTONIC stamps of its way here (bench e2e): log on the socket, pool record in
        # the events ring, the agent's record in its outbox, accepted
        for f, src in (("t_origin", "t_origin"), ("t_event", "t_event"), ("t_agent", "t_written")):
            if isinstance(rec.get(src), int) and not isinstance(rec.get(src), bool):
                base[f] = rec[src]
        base["t_accept"] = t_accept
        try:
            action = action_from_record(rec.get("action"))
        except ValueError as e:
            return self._refuse(key, base, f"bad action: {e}", nowait=True), None
        base["chain"] = action.chain
        # what the agent predicts the contract keeps: out − repay (a V2 flash swap on hop 0
        # repays amount_in with no loan fee, any other loan amount_in + fee)
        predicted = action.expected_out - action.amount_in - action.loan.fee
        base.update(predicted=str(predicted),
                    expected_net=str(action.expected_profit),
                    min_profit=str(action.min_profit), token=action.route.token)
        if self.halted:
            return self._refuse(key, base, f"halted: {self.halted}", nowait=True), None
        if action.deadline < self.clock():
            return self._refuse(key, base, f"stale: deadline {action.deadline} passed",
                                nowait=True), None
        if self.validator is not None:      # pure and cheap: before any node is asked
            why = self.validator(action)
            if why:
                return self._refuse(key, base, f"re-quote: {why}", nowait=True), None
        setup, cd = self.setups.get(action.chain), self.chains.get(action.chain)
        if setup is None:
            return self._refuse(key, base, f"no executor contract configured on {action.chain}",
                                nowait=True), None
        if cd is None:
            return self._refuse(key, base, f"{action.chain} is down: {self.down.get(action.chain)}",
                                nowait=True), None
        t_origin = rec.get("t_origin") if isinstance(rec.get("t_origin"), int) else None
        why = self._stale(setup, t_origin)
        if why:
            return self._refuse(key, base, why, nowait=True), None
        if setup.pools:
            for h in action.route.hops:
                if h.pool.lower() not in setup.pools:
                    return self._refuse(key, base, f"unknown pool {h.pool} on {action.chain}",
                                        nowait=True), None
        rate = self.gas_rate(action) if self.gas_rate is not None else None
        out, queued = self.ledger.append_nowait(key, "queued", **self._clean(base))
        self._count("queued")
        return out, Job(key, base, action, t_origin, t_accept, rate, queued, self.mono_ns())

    def _stale(self, setup: ChainSetup, t_origin: int | None) -> str:
        limit = setup.block_time * self.stale_factor
        if t_origin is not None and t_origin > 0:
            age = (self.mono_ns() - t_origin) / 1e9
            if age > limit:
                return (f"stale: {age:.3f} s old (> {limit:g} s: {self.stale_factor:g} blocks "
                        f"of {setup.block_time:g} s)")
        return ""

    # -- the sending thread --------------------------------------------------------------------
    def carry(self, job: Job) -> dict:
        """Price, simulate and (live) sign and send one accepted Action: its record."""
        t0 = self.mono_ns()
        job.phases["wait"] = t0
        key, base, action = job.key, dict(job.base), job.action
        base["ms_wait"] = round((t0 - job.t_accept) / 1e6, 3)
        setup, cd = self.setups[action.chain], self.chains[action.chain]
        why = self._stale(setup, job.t_origin)        # it may have waited behind another send
        if why:
            return self._refuse(key, base, why)
        try:
            head = cd.read_head(max_age=self.head_max_age(setup))
        except Exception as e:
            return self._refuse(key, base, f"node: cannot read the head: {type(e).__name__}: "
                                           f"{str(e)[:160]}")
        job.phases["head"] = self.mono_ns()
        # the deadline block: as many blocks as the staleness limit has left (at least the
        # pending one); an agent's own, earlier deadline block stands
        left = setup.block_time * self.stale_factor
        if job.t_origin:
            left -= (t0 - job.t_origin) / 1e9
        deadline = head.number + max(1, math.ceil(left / setup.block_time))
        if action.deadline_block:
            deadline = min(deadline, action.deadline_block)
        max_fee, prio = price_fees(action.chain, head.base_fee, setup.bid_priority,
                                   action.max_priority_fee_per_gas)
        action = replace(action, deadline_block=deadline, max_fee_per_gas=max_fee,
                         max_priority_fee_per_gas=prio)
        base.update(deadline_block=deadline, head_block=head.number, base_fee=str(head.base_fee),
                    max_fee_per_gas=str(max_fee), max_priority_fee_per_gas=str(prio))
        data = encode_execute(action)
        presigned: list = []

        def presign():
            # while the node works on the eth_call: sign for the nonce we expect (the node's
            # count comes back with the simulation; _send signs again if it differs, and a
            # signer that fails here fails there, named).  Never sent unless the simulation
            # passes; it lives only in this frame.
            try:
                if cd.nonce is not None:
                    presigned[:] = [cd.nonce, *self.signer.sign(self._tx(cd, action, data,
                                                                         cd.nonce))]
            except Exception:
                presigned.clear()
        try:
            if self.paper:
                sim, count = cd.simulate(action, data), None
            else:     # the nonce comes back with the simulation: one round trip, not two
                sim, count = cd.simulate_and_count(action, data, meanwhile=presign)
            job.phases["simulate"] = self.mono_ns()
        except Exception as e:   # the node failed the call itself
            return self._refuse(key, base, f"simulation: {type(e).__name__}: {str(e)[:160]}")
        if not sim.ok:
            return self._refuse(key, base, f"simulation: {sim.error}")
        base["simulated"] = str(sim.profit)
        if job.rate is not None:
            # at the price this transaction pays now, over its whole gas limit (an upper bound:
            # the limit carries the agent's margin over its estimate)
            gas_wei = action.gas_limit * (head.base_fee + prio)
            gas_token = -(-gas_wei * job.rate // 10**18)
            base.update(gas_token=str(gas_token), net_after_gas=str(sim.profit - gas_token))
            if sim.profit - gas_token <= 0:
                return self._refuse(key, base, f"gas: simulated profit {sim.profit} does not pay "
                                               f"{gas_token} of gas ({action.gas_limit} gas at "
                                               f"{(head.base_fee + prio) / GWEI:g} gwei)")
        base["ms_simulated"] = round((self.mono_ns() - t0) / 1e6, 3)
        if self.paper:
            rec = self._led(key, "paper", base)
            self._tally(rec)
            return rec
        return self._send(key, base, action, cd, head, job, data, count, presigned)

    @staticmethod
    def _tx(cd: ChainDesk, action, data: bytes, nonce: int) -> dict:
        return {"type": 2, "chainId": cd.setup.chain_id, "nonce": nonce, "to": cd.contract.address,
                "value": 0, "data": "0x" + data.hex(), "gas": action.gas_limit,
                "maxFeePerGas": action.max_fee_per_gas,
                "maxPriorityFeePerGas": action.max_priority_fee_per_gas}

    def _send(self, key: str, base: dict, action, cd: ChainDesk, head, job: Job, data: bytes,
              count: int | None, presigned: list | None = None) -> dict:
        chain = action.chain
        self._sync_nonce(chain, count)
        if cd.nonce is None:
            return self._refuse(key, base, f"{chain}: no nonce ({self.down.get(chain)})")
        nonce = cd.nonce
        job.phases["nonce"] = self.mono_ns()
        if presigned and presigned[0] == nonce:     # signed during the eth_call
            raw, tx_hash = presigned[1], presigned[2]
            self.presigned += 1
        else:
            raw, tx_hash = self.signer.sign(self._tx(cd, action, data, nonce))
        self._signing[key] = tx_hash
        job.phases["sign"] = self.mono_ns()
        if job.queued is not None:          # "queued" before "signed" on the ledger
            job.queued.wait(self.request_timeout)
        job.phases["queued"] = self.mono_ns()
        signed = self._led(key, "signed", {**base, "tx": tx_hash, "nonce": nonce,
                                            "from": self.signer.address})
        self._count("signed")
        cd.nonce = nonce + 1
        self._crash("after-record")
        t_signed = self.mono_ns()
        res = cd.policy.submit(raw, tx_hash, cd.setup.rpc)
        t_sent = self.mono_ns()
        if not res.ok:
            self._sync_nonce(chain)        # nothing took it: the nonce is free again
            rec = self._led(key, "rejected", {"tx": tx_hash, "nonce": nonce, "chain": chain,
                                              "reason": f"rejected: {res.error}"[:600]})
            self._signing.pop(key, None)
            self._tally(rec)
            return rec
        self._crash("after-send")
        self._count("sent")
        p = Pending(key, chain, tx_hash, nonce, action.route.token, int(base["predicted"]),
                    self.clock(), private=res.endpoint.startswith("private"),
                    sent_block=head.number, max_fee=action.max_fee_per_gas,
                    prio=action.max_priority_fee_per_gas)
        self.pending[tx_hash] = p
        job.phases["commit"], job.phases["submit"] = t_signed, t_sent
        ms = {"ms_accept": round((job.t_queued - job.t_accept) / 1e6, 3),
              "ms_phases": job.phase_ms(t0=job.t_accept),
              "ms_signed": round((t_signed - job.t_accept) / 1e6, 3),
              "ms_submit": round((t_sent - t_signed) / 1e6, 3),
              "ms_sent": round((t_sent - job.t_accept) / 1e6, 3),
              **({"ms_handed": round((res.handed_ns - job.t_accept) / 1e6, 3)}
                 if t_signed <= res.handed_ns <= t_sent else {}),
              **({"behind": job.behind} if job.behind else {})}
        out = self._led(key, "sent", {"tx": tx_hash, "endpoint": res.endpoint, "chain": chain, **ms,
                                      **({"skipped": list(res.errors)} if res.errors else {})})
        self._signing.pop(key, None)
        return {**signed, **out}

    def failed(self, job: Job) -> dict:
        """carry() raised (a bug, or a node's answer nothing expected): refused if it was never
        signed; a signed one is followed by its hash like one found after a restart."""
        h = self._signing.pop(job.key, None)
        if h is None:
            return self._refuse(job.key, dict(job.base), "executor failed before signing")
        rec = self.ledger.history().get(job.key) or {}
        if rec.get("state") not in ("signed", "sent"):     # failed before "signed" committed
            return self._refuse(job.key, dict(job.base), "executor failed while signing")
        self._recover({**rec, "key": job.key, "chain": job.action.chain, "tx": h})
        return {"key": job.key, "state": rec["state"], "tx": h, "chain": job.action.chain}

    def _crash(self, point: str) -> None:
        """A fire drill (options crash_at / crash_flag): SIGKILL ourselves once, here."""
        if self.crash_at != point:
            return
        if self.crash_flag:
            if os.path.exists(self.crash_flag):
                return
            open(self.crash_flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    # -- the ledger and the figures ------------------------------------------------------------
    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _tally(self, rec: dict) -> None:
        """Count a final outcome in the status figures (also for the ledger's past ones)."""
        state, chain = rec.get("state"), rec.get("chain")
        if state not in FINAL:
            return
        with self._lock:
            self._tally_locked(rec, state, chain)

    def _tally_locked(self, rec: dict, state: str, chain) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1
        if state == "refused":
            head = str(rec.get("reason", "")).split(":", 1)[0]
            self.refused[head] = self.refused.get(head, 0) + 1
        if state in ("landed", "reverted") or (state == "replaced" and rec.get("gas_cost_wei")):
            pr = self.profit.setdefault(chain, {"predicted": 0, "realised": 0, "gas_wei": 0,
                                                "landed": 0, "reverted": 0})
            if state != "replaced":          # a cancel's gas counts, not the trade
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
    def _final_key(self, rec: dict, state: str, reason: str) -> None:
        """A final state for a key nothing is followed for (a "queued" one after a restart)."""
        self._tally(self._led(rec["key"], state, {"chain": rec.get("chain"), "reason": reason}))

    @staticmethod
    def _clean(fields: dict) -> dict:
        """uint256 figures as strings (the store's encoder refuses integers over 64 bits)."""
        return {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1 << 63
                    else v) for k, v in fields.items()}

    def _refuse(self, key: str, base: dict, reason: str, nowait: bool = False) -> dict:
        """nowait: in the switch, which must not wait for a commit (a refusal lost to a SIGKILL
        is only looked at again when the record is redelivered)."""
        rec = self._led(key, "refused", {**base, "reason": reason[:600]}, nowait=nowait)
        self._tally(rec)
        return rec

    def _led(self, key: str, state: str, fields: dict, nowait: bool = False) -> dict:
        rec = self._clean(fields)
        rec["t"] = round(self.clock(), 6)
        out = self.ledger.append_nowait(key, state, **rec)[0] if nowait else \
            self.ledger.append(key, state, **rec)
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
        summary = (f"{mode}: {c['taken']} taken, {c['queued']} queued, {c['paper']} simulated (paper), {c['sent']} sent, "
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
                "presigned": self.presigned,
                "endpoints": {ch: cd.policy.describe() for ch, cd in self.chains.items()}}
