"""The flash-loan executor role: the agents' approved opportunities in, transactions out.

    events.<chain> rings (subscribe = "quiet") ──► its own replicas (never interrupted by them)
    out.<agent> rings (inbox = "interrupt") ──► handle(), in the switch: Desk.accept(record)
        wire check, dedup, staleness, re-quote on its replica (engine/arb/validate.requote: the
        agent calculated, the executor validates; both must agree), known pools; no node asked
        ──► "queued" ──► the sending thread (engine/chain/sender.py): Desk.carry(job)
        head ─► deadline block + EIP-1559 fees (live base fee, the gas tasks' priority) ─►
        eth_call on "pending" ─► profit after gas ─► paper | signed → sent | rejected
        and every receipt_poll s Desk.poll_receipts(): landed | reverted | replaced | dropped
        (a transaction stuck replace_after_blocks is cancelled at its nonce)
    outcome records ──► out.flash-loan-executor (the coordinator reads them); status info
        (the receipts task drains the thread's outcomes: the outbox has one writer)

Mode: `[engine] mode = "paper"` (the default) simulates each Action with eth_call on "pending"
and records what it would have made; nothing is signed.  `mode = "live"` signs with the key in
SYNDICATE_EXECUTOR_KEY (`key_env`) or the keystore file `keystore` (its password in the variable
`password_env`), and refuses to trade at all (every action is refused with the reason, status
says HALTED) when that key is one of anvil's dev accounts on a node that is not anvil, or is
neither the executor contract's owner nor allow-listed on some chain.

Per chain (engine.toml `[chains.<name>]`): `executor` (else the devnet manifest's
`contracts.executor`), `rpc`, `block_time` (stale after block_time × `stale_factor`),
`pools` (an action through another pool is refused), and `submit.endpoints`
(engine/chain/submit.py).  The agents share their block timing and gas trend (research
records in their outboxes): the staleness limit and the priority fee follow them.
"""
from __future__ import annotations

import time

from engine.chain.desk import BLOCK_TIME, ChainSetup, Desk
from engine.chain.outcomes import Ledger
from engine.chain.sender import Sender
from engine.core.tasks import Priority, Task

from . import metrics, research
from .agents import Agent
from .tasks import ChecksumTask


class ReceiptTask(Task):
    """Publishes what the sending thread finished (sent, landed, reverted...): the thread
    follows the receipts, the outbox ring takes records from the main thread only."""
    name = "receipts"
    priority = Priority.HIGH
    interval = 0.2

    def __init__(self, kind: "Executor", **kw):
        super().__init__(**kw)
        self.kind = kind

    def initial_state(self):
        return {"polls": 0}

    def run(self, ctx):
        kind = self.kind
        if kind.sender is not None:
            done = kind.sender.drain()
        elif kind.desk is not None and kind.desk.pending:    # sending_thread = false
            yield None
            done = kind.desk.poll_receipts()
        else:
            done = []
        if done:
            self.state["polls"] += 1
            kind.publish(done)
        kind.refresh_info(force=bool(done))


class Executor(Agent):
    """Takes the agents' Actions from its inbox (module docstring).  An Agent for its replicas
    and its chains' lenders (the re-quote), not for pricing: it publishes no opportunities."""

    METRICS = metrics.EXECUTOR      # what /metrics reads from the Desk's info

    OPTIONS = {
        **Agent.OPTIONS,
        "keystore": (str, "", "an encrypted JSON keystore file (relative to engine.toml); "
                              "else the key comes from key_env"),
        "password_env": (str, "", "the environment variable holding the keystore's password"),
        "key_env": (str, "SYNDICATE_EXECUTOR_KEY", "the environment variable holding the key"),
        "stale_factor": (float, 4.0, "an action older than this many of its chain's block "
                                     "times is dropped as stale"),
        "receipt_timeout": (float, 30.0, "seconds to wait for a receipt before 'dropped'"),
        "receipt_poll": (float, 0.2, "seconds between receipt lookups"),
        "replace_after_blocks": (int, 3, "blocks without a receipt before a transaction still "
                                         "in the node's pool is cancelled at its nonce"),
        "request_timeout": (float, 3.0, "seconds one JSON-RPC call may take"),
        "dedup_window": (int, 100_000, "(role, event) pairs remembered to act once"),
        "fresh_heads": (bool, True, "keep each chain's head (base fee, number) fresh while "
                                    "idle: a send saves a round trip; costs an "
                                    "eth_getBlockByNumber every quarter block per chain"),
        "hold_switch": (float, 0.05, "seconds the main thread may wait after a switch, boosted "
                                     "and off the GIL, for the sending thread to finish what "
                                     "the switch handed it, before it lowers itself and runs "
                                     "its tasks (0: lower at once; DEVELOPING.md)"),
        "sending_thread": (bool, True, "simulate, sign and send in a thread (false: in the "
                                       "switch, as before; for comparison only)"),
        "crash_at": (str, "", "fire drill: SIGKILL the role once at 'after-record' or 'after-send'"),
        "crash_flag": (str, "", "fire drill: the file that marks the crash as done"),
    }
    TASKS = {"checksum": ChecksumTask, "receipts": ReceiptTask, **research.declared("executor")}

    def __init__(self, rt):
        super().__init__(rt)
        self.desk: Desk | None = None
        self.sender: Sender | None = None
        self._info_at = 0.0
        self.measured_block_time: dict[str, float] = {}   # chain -> from an agent's research

    def tasks(self):
        o = self.options
        return [ChecksumTask(), ReceiptTask(self, interval=float(o["receipt_poll"])),
                *research.build("executor", chain="", rpc=None, graphs=self.replicas.ready,
                                store=getattr(self.rt, "store", None), setups=self._gas_chains)]

    def _gas_chains(self) -> dict:
        """{chain: (rpc, contract, caller, owner)} for contract-optimisation's eth_estimateGas
        and fork-testing's transactions (sent as the caller, the profit paid to the owner)."""
        chains = self.desk.chains if self.desk is not None else {}
        return {c: (cd.setup.rpc, cd.contract.address, cd.contract.caller, cd.owner)
                for c, cd in chains.items()}

    def on_start(self) -> None:
        super().on_start()          # the replicas
        cfg, o = self.rt.cfg, self.options
        mode = cfg.engine.get("mode", "paper")
        signer, why = None, ""
        if mode == "live":
            from engine.chain.keys import KeyError_, load_signer
            try:
                signer = load_signer(keystore=o["keystore"], password_env=o["password_env"],
                                     key_env=o["key_env"], base=cfg.base_dir)
            except KeyError_ as e:
                why = str(e)
        self.desk = Desk(self.setups(), Ledger(self.rt.store, self.name), signer=signer,
                         stale_factor=float(o["stale_factor"]),
                         receipt_timeout=float(o["receipt_timeout"]),
                         request_timeout=float(o["request_timeout"]), log=self.log,
                         crash_at=o["crash_at"], crash_flag=o["crash_flag"],
                         validator=self.requote, gas_rate=self.gas_rate,
                         replace_after=int(o["replace_after_blocks"]))
        self.desk.dedup_window = int(o["dedup_window"])
        if mode == "live" and signer is None:
            self.desk.paper = False
            self.desk.halted = why
        self.desk.start()
        if o["sending_thread"]:
            prio = getattr(getattr(self.rt, "wiring", None), "role_boost_priority", None)
            self.sender = Sender(self.desk, poll_s=float(o["receipt_poll"]), log=self.log,
                                 priority=prio, fresh_heads=bool(o["fresh_heads"]))
            self.sender.start()
        if self.desk.halted:
            self.log.error("the executor refuses to trade live", why=self.desk.halted)
        self.log.info("executor ready", mode=self.desk.info()["mode"],
                      chains=",".join(self.desk.chains) or "-",
                      down=";".join(f"{c}: {w}" for c, w in self.desk.down.items()) or "-",
                      address=signer.address if signer is not None else "-")
        self.refresh_info(force=True)

    def on_stop(self) -> None:
        """The send in hand finishes (queued ones stay "queued"); then a graceful stop follows
        what was sent one last time (at most 2 s: inside the stop's grace), so the ledger ends
        with each transaction's outcome rather than "sent"."""
        if self.sender is not None:
            self.sender.stop(timeout=float(self.options["request_timeout"]) * 2)
            self.publish(self.sender.drain())
        d, deadline = self.desk, time.monotonic() + min(2.0, float(self.options["receipt_timeout"]))
        while d is not None and d.pending and time.monotonic() < deadline:
            try:
                self.publish(d.poll_receipts() or [])
            except Exception as e:   # a node gone: the next start follows them (tracker)
                self.log.warning("last receipt poll failed", error=f"{type(e).__name__}: {e}"[:200])
                break
            if d.pending:
                time.sleep(0.1)
        super().on_stop()

    def setups(self) -> dict[str, ChainSetup]:
        """Every chain of this role that has an RPC endpoint and an executor contract."""
        cfg = self.rt.cfg
        nets = getattr(cfg, "networks", {}) or {}
        served = ((cfg.manifest or {}).get("chains") or {})
        out = {}
        for c in self.config.chains:
            n = nets.get(c) or {}
            addr = n.get("executor") or ((served.get(c) or {}).get("contracts") or {}).get("executor")
            if not n.get("rpc") or not addr:
                self.log.warning("no executor contract or rpc endpoint on this chain: its actions "
                                 "are refused", chain=c)
                continue
            out[c] = ChainSetup(c, n["rpc"][0], int(n.get("chain_id") or 0), addr,
                                float(n.get("block_time") or BLOCK_TIME.get(c, 2.0)),
                                frozenset(a.lower() for a in n.get("pools") or ()),
                                dict(n.get("submit") or {}))
        return out

    def requote(self, action) -> str | None:
        """The independent re-quote on this role's replica (None: agreed).  A chain whose events
        ring this role does not read (no monitor runs) has no replica: eth_call alone decides."""
        from engine.arb.validate import requote
        chain = action.chain
        if chain not in self.replicas.need:
            return None
        graph, pricer = self.replicas.graphs.get(chain), self.pricers.get(chain)
        if graph is None or pricer is None:
            return f"no replica of {chain} yet"
        r = requote(graph, action, loans=pricer.loans)
        return None if r.ok else r.reason

    def gas_rate(self, action) -> int | None:
        """The route token's units per 10**18 wei of gas, on this role's replica (None without
        one: the profit-after-gas check is then skipped, the contract's minProfit stands)."""
        from engine.arb.profit import convert
        graph, pricer = self.replicas.graphs.get(action.chain), self.pricers.get(action.chain)
        if graph is None or pricer is None:
            return None
        return convert(graph, 10**18, pricer.native, action.route.token.lower())

    def handle(self, events):
        out = []
        for ev in events:      # pool records first: the replica is current for this batch
            if ev.get("type") == "pool" and ev["ring"].startswith("events."):
                self.replicas.apply(ev)
        for ev in events:
            if self.desk is None:
                break
            if not ev["ring"].startswith("out."):
                continue
            if ev.get("kind") == "research":     # an agent's block timing (Agent.share_research)
                self.research_from(ev)
                continue
            try:
                rec, job = self.desk.accept(ev)
            except Exception as e:   # never a crash on bad data from a node or a sender
                self.log.error("executor failed on a record", error=f"{type(e).__name__}: {e}"[:300],
                               event=str(ev.get("event"))[:100])
                continue
            if job is not None:
                if self.sender is not None:
                    self.sender.put(job)
                else:                 # sending_thread = false, or a kind driven by hand
                    try:
                        rec = self.desk.carry(job)
                    except Exception as e:
                        self.log.error("executor failed on an action",
                                       error=f"{type(e).__name__}: {e}"[:300], key=job.key)
                        rec = self.desk.failed(job)
            if rec is not None:   # one record per opportunity: `bench switch` times them
                out.append(self._outbox(rec, ev))
        if self.sender is not None:
            out += [self._outbox(r) for r in self.sender.drain()]
        return out                # the status info: the receipts task, within receipt_poll

    def hold(self):
        """RoleKind.hold: while the sending thread carries a job from this switch (or an
        earlier one), the main thread waits for it rather than run its tasks at nice 10 with
        the GIL the sender needs after every socket read."""
        limit = float(self.options["hold_switch"])
        fd = self.sender.hold_fd() if self.sender is not None and limit > 0 else None
        return None if fd is None else (fd, limit)

    def research_from(self, ev: dict) -> None:
        """An agent measured its chain's block interval or gas trend (Agent.share_research):
        the staleness limit (block_time × stale_factor) and the priority fee follow them.
        Absurd figures are ignored."""
        setup = self.desk.setups.get(ev.get("chain")) if self.desk is not None else None
        if setup is None:
            return
        if "bid_priority_wei" in ev:
            try:
                bid = int(ev["bid_priority_wei"])
            except (TypeError, ValueError):
                return
            if 0 <= bid <= 10**13 and bid != setup.bid_priority:     # 10 000 gwei: absurd
                self.log.info("priority fee from research", chain=setup.chain,
                              was=setup.bid_priority, now=bid, source=ev.get("role"))
                setup.bid_priority = bid
            return
        iv = ev.get("interval_s")
        if not isinstance(iv, (int, float)) or isinstance(iv, bool) or not 0.05 <= iv <= 60.0:
            return
        if abs(setup.block_time - iv) > 1e-9:
            self.log.info("block time from research", chain=setup.chain, was=setup.block_time,
                          now=iv, source=ev.get("role"), task=ev.get("task"))
            setup.block_time = float(iv)
            self.measured_block_time[setup.chain] = float(iv)

    @staticmethod
    def _outbox(rec: dict, ev: dict | None = None) -> dict:
        keep = ("key", "state", "chain", "tx", "reason", "predicted", "simulated", "realised",
                "ms_sent")
        out = {"kind": "execution", **{k: rec[k] for k in keep if k in rec}}
        if ev is not None:
            out.update(source=ev.get("role"), event=ev.get("event"),
                       t_event=ev.get("t_written"), t_origin=ev.get("t_origin"))
        elif "key" in rec:     # from the sending thread: the key is "<source role>|<event>"
            src, _, event = str(rec["key"]).partition("|")
            out.update(source=rec.get("source", src), event=rec.get("event", event))
        return out

    def publish(self, recs: list[dict]) -> None:
        if recs and getattr(self.rt, "outbox", None) is not None:
            self.rt._publish_decisions([self._outbox(r) for r in recs])

    def refresh_info(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.desk is None or (not force and now - self._info_at < 0.2):
            return
        self._info_at = now
        if hasattr(self.rt, "set_info"):
            doc = self.desk.info()
            doc["block_time"] = {c: s.block_time for c, s in self.desk.setups.items()}
            doc["block_time_measured"] = dict(self.measured_block_time)
            doc["bid_priority"] = {c: s.bid_priority for c, s in self.desk.setups.items()}
            if self.sender is not None:
                doc["sender"] = {"queue": self.sender.depth(), "carried": self.sender.carried,
                                 "failures": self.sender.failures,
                                 "last_error": self.sender.last_error}
            rep = self.replicas.info()
            doc["summary"] += "; " + rep.pop("summary")
            self.rt.set_info({**rep, **doc})
