"""The one signal table (engine/core/signals.py): both processes have a handler for every signal
it queues, FORK_BLOCKED covers every signal a child must not take before its handlers are set,
and README.md's "Signals" table says what the table says."""
from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from engine.core import signals as S
from engine.core.role import RoleRuntime
from engine.core.supervisor import Supervisor

README = Path(__file__).resolve().parents[2] / "README.md"


def label(signum: int) -> str:
    return S.signame(signum).removeprefix("SIG")


def readme_signals() -> set[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("\n## Signals\n"):]
    section = section[:section.index("\n## ", 1)]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("supervisor", "role"):
            for sig in re.findall(r"`([A-Z0-9+]+)`", cells[1]):
                rows.add((cells[0], sig))
    return rows


def test_readme_signals_table_matches_the_table():
    table = {(t.process, label(s.signum)) for t in S.SIGNALS for s in t.entries if s.documented}
    assert readme_signals() == table


@pytest.mark.parametrize("table,cls", [(S.SUPERVISOR_SIGNALS, Supervisor),
                                       (S.ROLE_SIGNALS, RoleRuntime)])
def test_every_signal_has_its_handler(table, cls):
    for s in table.entries:
        if s.how == S.QUEUE:
            assert callable(getattr(cls, f"handle_{s.name}", None)), (table.process, s.name)
        elif s.how == S.RECORD:
            assert callable(getattr(cls, f"on_{s.name}", None)), (table.process, s.name)


def test_fork_blocked_is_every_handled_signal():
    handled = {s.signum for t in S.SIGNALS for s in t.entries if s.how in (S.QUEUE, S.RECORD)}
    assert S.FORK_BLOCKED == handled
    assert S.SIG_INTERRUPT in S.FORK_BLOCKED and signal.SIGTERM in S.FORK_BLOCKED
    assert signal.SIGABRT not in S.FORK_BLOCKED    # faulthandler's, never blocked


def test_dispatch_by_name_and_a_signal_listed_twice_is_refused():
    seen = []

    class Target:
        def handle_term(self):
            seen.append("term")
    S.SUPERVISOR_SIGNALS.dispatch(Target(), signal.SIGTERM)
    assert seen == ["term"]
    with pytest.raises(ValueError, match="listed twice"):
        S.SignalTable("x", (S.Sig(signal.SIGTERM, "a", ""), S.Sig(signal.SIGTERM, "b", "")))


def test_role_actions_are_role_signals():
    for action, sig in S.ROLE_ACTIONS.items():
        assert S.ROLE_SIGNALS.by_signum[sig].how == S.QUEUE, action
