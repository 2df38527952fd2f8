"""The summary of `syndicate run`: live in the terminal (rich), as log lines when stdout is not
a terminal, and once more at exit, with `--duration S` ending the run.

It runs in the supervisor's process, called from its loop (`Supervisor.ticker`: `.due`,
`.tick(sup)`), and reads only what `syndicate status` reads plus the executor's ledger:

    control block + roles' info  (engine/core/status.report)   roles, states, switches and
                                                                their latency, events, the
                                                                agents' opportunities
    outcomes database            (the executor's ledger, read   executed, landed, reverted,
                                  incrementally from this run)  refused; profit per chain and
                                                                token, exact to the wei

No role renders or is asked anything.  `Summary.final(sup)` (after the roles stopped, before the
control block closes) gives the document `--duration` prints and writes to
`<state_dir>/log/<name>.summary.json`.
"""
from __future__ import annotations

import os
import sys
import time

from .config_schema import EXECUTOR_KINDS
from .core.status import report

FINAL = ("landed", "reverted", "refused", "dropped", "rejected", "replaced", "paper")


class Summary:
    def __init__(self, cfg, *, live: bool, duration: float | None = None, note: str = "",
                 tokens: dict | None = None, log=None, clock=time.monotonic):
        self.cfg, self.live, self.duration, self.note, self.clock = cfg, live, duration, note, clock
        self.tokens = tokens or {}          # (chain, address lower) -> (symbol, decimals)
        self.log = log
        self.t0, self.wall0 = clock(), time.time()
        self.interval = 1.0 if live else 10.0
        self.due = self.t0 + (1.0 if live else self.interval)
        self.stop_at = None if duration is None else self.t0 + duration
        if self.stop_at is not None:
            self.due = min(self.due, self.stop_at)
        self.executors = [r.name for r in cfg.roles.values() if r.enabled and r.kind in EXECUTOR_KINDS]
        self.seq: dict[str, int] = {}       # executor role -> last ledger seq read
        self.trades: dict[str, dict] = {}   # action key -> {"chain", "token", "state", ...}
        self.prev_events: tuple[float, dict[str, int]] | None = None
        self.rates: dict[str, float] = {}
        self.failed = False
        self._live = None
        self._log_pos = None
        self.recent: list[str] = []         # the log's last warnings and errors (live view)

    # ------------------------------------------------------------------ the loop's call
    def tick(self, sup) -> None:
        now = self.clock()
        if self.stop_at is not None and now >= self.stop_at and not sup.stopping:
            sup.begin_stop(f"--duration {self.duration:g} s")
            self.stop_at = None
        self.due = now + self.interval
        if self.stop_at is not None:
            self.due = min(self.due, self.stop_at)
        try:
            doc = self.collect(sup)
            if self.live:
                self._render(doc)
            elif self.log is not None:
                self.log.info("summary", **self.fields(doc))
        except Exception as e:    # the summary must never take the engine down
            if not self.failed and self.log is not None:
                self.log.error("summary failed", error=f"{type(e).__name__}: {e}"[:300])
            self.failed = True

    # ------------------------------------------------------------------ figures
    def collect(self, sup) -> dict:
        rep = report(sup.wiring.control, sup.name, sup.rundir.path)
        self._read_ledger(sup.store)
        now = self.clock()
        chains = {c: {"events": 0, "events_per_s": 0.0, "opportunities": 0, "approved": 0,
                      "refused_by_agents": 0, "executed": 0, "landed": 0, "reverted": 0,
                      "refused": 0, "dropped": 0, "simulated": 0, "profit": {}}
                  for c in self._chains()}
        ev = {}
        for r in rep["roles"]:
            info = r.get("info") or {}
            for c, ci in (info.get("chains") or {}).items():
                if isinstance(ci, dict) and c in chains and isinstance(ci.get("events"), int):
                    ev[c] = ev.get(c, 0) + ci["events"]
            opp = info.get("opportunities")
            if isinstance(opp, dict) and len(self._role_chains(r["name"])) == 1:
                c = self._role_chains(r["name"])[0]
                if c in chains:
                    chains[c]["opportunities"] += int(opp.get("opportunities") or 0)
                    chains[c]["approved"] += int(opp.get("approved") or 0)
                    chains[c]["refused_by_agents"] += int(opp.get("refused") or 0)
        if self.prev_events is not None and now > self.prev_events[0]:
            t, before = self.prev_events
            self.rates = {c: max(0, n - before.get(c, 0)) / (now - t) for c, n in ev.items()}
        self.prev_events = (now, ev)
        for c, n in ev.items():
            chains[c]["events"] = n
            chains[c]["events_per_s"] = round(self.rates.get(c, 0.0), 2)
        for t in self.trades.values():
            ch = chains.setdefault(t["chain"], {"events": 0, "events_per_s": 0.0, "opportunities": 0,
                                                "approved": 0, "refused_by_agents": 0,
                                                "executed": 0, "landed": 0, "reverted": 0,
                                                "refused": 0, "dropped": 0, "simulated": 0,
                                                "profit": {}})
            st = t["state"]
            if t.get("sent"):
                ch["executed"] += 1
            if st in ("landed", "reverted", "refused", "dropped"):
                ch[st] += 1
            elif st in ("queued", "signed", "sent"):
                ch["in_flight"] = ch.get("in_flight", 0) + 1
            if st == "paper":
                ch["simulated"] += 1
            if st == "landed" and t.get("realised") is not None:
                tok = t.get("token") or "?"
                ch["profit"][tok] = ch["profit"].get(tok, 0) + int(t["realised"])
            if st == "paper" and t.get("simulated") is not None:
                tok = t.get("token") or "?"
                ch.setdefault("paper_profit", {})
                ch["paper_profit"][tok] = ch["paper_profit"].get(tok, 0) + int(t["simulated"])
            if t.get("gas_cost_wei"):
                ch["gas_wei"] = ch.get("gas_wei", 0) + int(t["gas_cost_wei"])
        roles = []
        for r in rep["roles"]:
            sw = (r.get("latency_us") or {}).get("switch") or {}
            roles.append({"name": r["name"], "state": r["state"] if r["alive"] else
                          ("stopped" if r["state"] in ("stopped", "stopping") else "down"),
                          "pid": r["pid"], "restarts": r["restarts"], "switches": r["switches"],
                          "switch_p50_us": sw.get("p50"), "switch_p99_us": sw.get("p99"),
                          "events": r["events"], "decisions": r["decisions"],
                          "cpu_percent": r["cpu_percent"], "efficiency": r["efficiency"]})
        mode = self.cfg.engine.get("mode", "paper")
        return {"engine": sup.name, "mode": mode, "note": self.note,
                "elapsed_s": round(now - self.t0, 1), "roles": roles, "chains": chains,
                "switches": sum(r["switches"] for r in roles),
                "trades": {k: sum(c.get(k, 0) for c in chains.values()) for k in
                           ("opportunities", "approved", "executed", "landed", "reverted",
                            "refused", "dropped", "simulated", "in_flight")}}

    def _chains(self) -> list[str]:
        seen = []
        for r in self.cfg.roles.values():
            for c in r.chains if r.enabled else ():
                if c not in seen:
                    seen.append(c)
        return seen

    def _role_chains(self, name: str) -> tuple[str, ...]:
        rc = self.cfg.roles.get(name)
        return rc.chains if rc is not None and rc.kind not in EXECUTOR_KINDS else ()

    def _read_ledger(self, store) -> None:
        """This run's outcomes, read on from where the last tick stopped."""
        if store is None:
            return
        with store.read() as r:
            for role in self.executors:
                for seq, rec in r.records("outcomes", role, self.seq.get(role, 0)):
                    self.seq[role] = seq
                    if not isinstance(rec, dict) or not isinstance(rec.get("t"), (int, float)) \
                            or rec["t"] < self.wall0 or "key" not in rec:
                        continue
                    t = self.trades.setdefault(rec["key"], {"chain": rec.get("chain") or "?"})
                    for k in ("token", "realised", "simulated", "gas_cost_wei", "tx", "reason"):
                        if rec.get(k) is not None:
                            t[k] = rec[k]
                    t["state"] = rec.get("state")
                    if rec.get("state") == "sent":
                        t["sent"] = True

    # ------------------------------------------------------------------ the end
    def final(self, sup, onchain: dict | None = None) -> dict:
        """The last figures, after the roles stopped (their status is still in shared memory)."""
        doc = self.collect(sup)
        for c, ch in doc["chains"].items():
            ch["events_per_s"] = round(ch["events"] / doc["elapsed_s"], 2) if doc["elapsed_s"] else 0.0
        if onchain is not None:
            doc["onchain"] = onchain
        self.stop_live()
        return doc

    def stop_live(self) -> None:
        if self._live is not None:
            try:
                self._live.stop()
            finally:
                self._live = None

    def amount(self, chain: str, token: str, raw: int) -> str:
        sym, dec = self.tokens.get((chain, str(token).lower()), (str(token)[:10], 0))
        return f"{raw / 10 ** dec:.6g} {sym}" if dec else f"{raw} {sym}"

    def fields(self, doc: dict) -> dict:
        """One log line's worth."""
        t = doc["trades"]
        profit = "; ".join(f"{c}: " + ", ".join(self.amount(c, k, v) for k, v in ch["profit"].items())
                           for c, ch in doc["chains"].items() if ch["profit"]) or "-"
        return {"up_s": doc["elapsed_s"], "events_per_s": round(sum(
            c["events_per_s"] for c in doc["chains"].values()), 2), "switches": doc["switches"],
            "opportunities": t["opportunities"], "executed": t["executed"], "landed": t["landed"],
            "reverted": t["reverted"], "refused": t["refused"], "simulated": t["simulated"],
            "profit": profit}

    # ------------------------------------------------------------------ rendering
    def tables(self, doc: dict, title: str, width: int = 160):
        """The two tables; under 110 columns (an 80-column terminal) the secondary columns go."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        wide = width >= 110
        roles = Table(title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD)
        rcols = ("role", "state", "restarts", "switches", "switch p50/p99 µs", "events",
                 "decisions", "cpu %")
        rcols = rcols if wide else ("role", "state", "restarts", "switches", "switch p50/p99 µs")
        for col in rcols:
            roles.add_column(col, justify="left" if col in ("role", "state") else "right",
                             no_wrap=col == "role")
        for r in doc["roles"]:
            lat = ("-" if r["switch_p50_us"] is None else
                   f"{r['switch_p50_us']:.0f} / {r['switch_p99_us']:.0f}")
            cells = [r["name"], _state(r["state"]), str(r["restarts"]), str(r["switches"]), lat,
                     str(r["events"]), str(r["decisions"]), f"{r['cpu_percent']:.0f}"]
            roles.add_row(*cells[:len(rcols)])
        chains = Table(expand=False, box=box.SIMPLE_HEAD)
        ccols = ("chain", "events", "ev/s", "opport.", "approved", "sent", "landed", "reverted",
                 "refused", "profit")
        keep = ccols if wide else ("chain", "ev/s", "opport.", "sent", "landed", "reverted",
                                   "profit")
        for col in keep:
            chains.add_column(col, justify="left" if col in ("chain", "profit") else "right")
        for c, ch in doc["chains"].items():
            profit = ", ".join(self.amount(c, k, v) for k, v in ch["profit"].items())
            if ch.get("paper_profit"):
                profit = "paper " + ", ".join(self.amount(c, k, v) for k, v in ch["paper_profit"].items())
            cells = dict(zip(ccols, (c, str(ch["events"]), f"{ch['events_per_s']:.1f}",
                                     str(ch["opportunities"]), str(ch["approved"]),
                                     str(ch["executed"]), str(ch["landed"]), str(ch["reverted"]),
                                     str(ch["refused"]), profit or "-")))
            chains.add_row(*(cells[k] for k in keep))
        parts = [roles, chains]
        if doc.get("onchain"):
            parts.append(self.onchain_text(doc["onchain"]))
        return Group(*parts)

    def title(self, doc: dict, final: bool = False) -> str:
        head = "syndicate: final summary" if final else "syndicate"
        return (f"{head} · {doc['engine']} · {doc['mode']}{' · ' + self.note if self.note else ''}"
                f" · {doc['elapsed_s']:.0f} s · log {self.cfg.log_path}")

    def onchain_text(self, onchain: dict) -> str:
        lines = []
        for c, toks in onchain.items():
            for tok, d in toks.items():
                ok = "=" if d["change"] == d["realised"] else "≠"
                lines.append(f"on chain {c}: owner's {self.amount(c, tok, d['change'])} {ok} "
                             f"realised {self.amount(c, tok, d['realised'])} (wei: {d['change']} "
                             f"{ok} {d['realised']})")
        return "\n".join(lines) or "on chain: no profit token changed"

    def _render(self, doc: dict) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        self._tail_log()
        width = self._live.console.width if self._live is not None else Console().width
        body = self.tables(doc, self.title(doc), width)
        if self.recent:
            body = Group(body, "recent warnings and errors:\n" + "\n".join(self.recent[-5:]))
        if self._live is None:
            self._live = Live(body, console=Console(file=sys.stdout), auto_refresh=False,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._live.update(body, refresh=True)

    def _tail_log(self) -> None:
        """The warnings and errors every process appended to the log since the last tick (the
        log file is the engine's, O_APPEND: a line is whole)."""
        try:
            with open(self.cfg.log_path, "rb") as f:
                if self._log_pos is None:
                    self._log_pos = os.fstat(f.fileno()).st_size
                f.seek(self._log_pos)
                data = f.read(1 << 20)
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._log_pos += end
        for line in data[:end].decode(errors="replace").splitlines():
            if " WARNING " in line[:40] or " ERROR " in line[:40] or '"level":"warning"' in line \
                    or '"level":"error"' in line:
                self.recent.append(line[:160])
        del self.recent[:-5]

    def print_final(self, doc: dict, out=None) -> None:
        from rich.console import Console
        out = out or sys.stdout
        console = Console(file=out, width=None if out.isatty() else 160)
        console.print(self.tables(doc, self.title(doc, final=True), console.width))


def _state(s: str) -> str:
    return {"down": "[red]down[/red]", "switching": "[yellow]switching[/yellow]",
            "handling": "[yellow]handling[/yellow]"}.get(s, s)
