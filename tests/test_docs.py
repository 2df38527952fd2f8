"""The documentation says only what the code does: every configuration key is in the README's
reference, and every command, option and metric that docs/ and the README name exists."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from engine import config_schema as cs
from engine.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def _config_reference() -> str:
    start = README.index("## Configuration (engine.toml)")
    return README[start:README.index("\n## ", start + 3)]


def _rows(section: str) -> list[str]:
    """The reference table's rows whose first cell names `section.`."""
    return [ln for ln in _config_reference().splitlines()
            if ln.startswith("| ") and f"`{section}." in ln.split("|")[1]]


def _documented(section: str, key: str) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", r.split("|")[1])
               for r in _rows(section))


def test_every_configuration_key_is_in_the_readme_reference():
    tables = [(s, keys) for s, keys in cs.SCHEMA.items()]
    tables += [("chains.<chain>", cs.CHAIN_SCHEMA), ("moralis", cs.MORALIS_SCHEMA),
               ("roles.<name>", {k: v for k, v in cs.ROLE_SCHEMA.items()})]
    missing = [f"{s}.{k}" for s, keys in tables for k in keys if not _documented(s, k)]
    task_row = " ".join(_rows("roles.<name>"))
    missing += [f"roles.<name>.tasks.<task>.{k}" for k in cs.TASK_SCHEMA if f"`{k}`" not in task_row]
    submit_row = " ".join(_rows("chains.<chain>"))
    missing += [f"chains.<chain>.submit.endpoints[].{k}" for k in cs.ENDPOINT_SCHEMA
                if not re.search(rf"\b{k}\b", submit_row)]
    assert missing == [], f"keys the README's configuration reference does not describe: {missing}"


def test_the_check_of_the_reference_can_fail():
    assert not _documented("engine", "no_such_key")
    assert _documented("engine", "grace") and _documented("supervisor", "restart_window")


def _commands(text: str) -> list[list[str]]:
    """`syndicate SUB …` invocations in code blocks and inline code."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = []
    for block in blocks:
        for line in block.splitlines():
            for m in re.finditer(r"(?:^|[\s/'\"(])syndicate ([a-z]+)((?: [^\s|;&#'\"]+)*)", line):
                found.append([m.group(1), *m.group(2).split()])
    return found


def _options(sub: str, args: list[str]) -> set[str]:
    """The --options that `syndicate SUB … --help` lists (bench and snapshot: of the named
    action); SystemExit is argparse's normal end after --help."""
    import importlib
    module = importlib.import_module(COMMANDS[sub][0])
    entry = getattr(module, f"main_{sub}", None) or module.main
    lead = [a for a in args if not a.startswith("-")][:1] if sub in ("bench", "devnet") else []
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            entry([*lead, "--help"])
    return set(re.findall(r"(--[a-z][a-z-]*)", out.getvalue()))


@pytest.mark.parametrize("name", ["README.md", *DOCS])
def test_documented_commands_exist(name):
    text = README if name == "README.md" else DOCS[name]
    bad = []
    for sub, *args in _commands(text):
        if sub not in COMMANDS:
            bad.append(f"syndicate {sub}: no such command")
            continue
        if sub == "snapshot":
            continue   # PATH ACTION …: its options belong to the action (checked below)
        known = _options(sub, args)
        bad += [f"syndicate {sub} {o}: no such option" for o in args
                if o.startswith("--") and o.split("=")[0] not in known]
    assert bad == [], f"{name} names what the command line does not have: {bad}"


def test_snapshot_actions_in_the_docs_exist():
    from engine.snapshot import _COMMANDS as ACTIONS
    for text in (README, *DOCS.values()):
        for m in re.finditer(r"syndicate snapshot (?:<[^>]+>|[^\s<]+) ([a-z]+)", text):
            assert m.group(1) in ACTIONS, m.group(0)


def test_the_operations_guide_names_real_metrics():
    import roles.metrics as rm
    from engine.core import metrics as em
    names = {f"syndicate_{n}_total" for _, n, _ in em.COUNTERS}
    names |= {f"syndicate_{n}_total" for _, n, _ in em.SECONDS}
    names |= {f"syndicate_{h.name.lower()}_seconds" for h in em.PHASES}
    names |= {"syndicate_role_up", "syndicate_role_state", "syndicate_role_flag"}
    for decl in vars(rm).values():
        if isinstance(decl, tuple):
            for m in decl:
                names.add(f"syndicate_{m.name}" + ("_total" if m.type == "counter" else ""))
    used = set(re.findall(r"\b(syndicate_[a-z_]+?)(?:_bucket)?\b", DOCS["operations.md"]))
    assert used, "the alerts name metrics"
    assert sorted(used - names) == []


def test_docs_name_no_path_the_repository_lacks():
    for name, text in DOCS.items():
        paths = set(re.findall(r"`((?:engine|roles|scripts|contracts|tests)/[\w./-]*)", text))
        missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
        assert missing == [], f"docs/{name} names paths the repository does not hold: {missing}"
        docs = set(re.findall(r"\b([\w-]+\.md)\b", text))
        assert all((ROOT / d).is_file() or (ROOT / "docs" / d).is_file() for d in docs), docs
