"""The floors of ARCHITECTURE.md: engine/core knows nothing of chains, arbitrage or roles, and
engine/arb does no I/O.  Checked on the source (imports), so a violation fails here first."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    out = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                pkg = path.relative_to(ROOT).with_suffix("").parts[:-node.level]
                mod = ".".join(pkg + ((mod,) if mod else ()))
            out.add(mod)
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        for m in imports(f):
            if any(m == x or m.startswith(x + ".") for x in forbidden):
                bad.append(f"{f.relative_to(ROOT)} imports {m}")
    return bad


def test_core_knows_no_chain_arbitrage_or_roles():
    assert offenders("engine/core", ("engine.arb", "engine.chain", "roles", "web3",
                                     "eth_abi", "eth_account", "scripts")) == []


def test_arb_is_pure():
    assert offenders("engine/arb", ("engine.core", "engine.chain", "roles", "web3", "socket",
                                    "requests", "aiohttp", "websockets", "lmdb",
                                    "posix_ipc", "subprocess")) == []


def test_config_is_pure():
    assert offenders("engine/config.py".rsplit("/", 1)[0], ()) == []
    assert not {m for m in imports(ROOT / "engine/config.py")
                if m.startswith(("engine.core", "engine.chain", "roles"))}
