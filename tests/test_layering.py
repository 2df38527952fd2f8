"""The floors of ARCHITECTURE.md, checked on the source (imports), so a violation fails here first:
engine/core knows nothing of chains, arbitrage or roles; engine/arb and engine/config.py do no
I/O and build on nothing of ours; engine/chain and engine/devnet do not reach up into roles or
the CLI (and the devnet, a test and development tool, stays out of the core and the chain
layer); and the modules of engine/ import each other without a cycle.

Every rule is proved able to fail: a test plants a forbidden import (each spelling: `import`,
`from … import`, relative, inside a function) or a cycle in a copy of the tree under tmp_path
(removed with the session) and sees it caught.

Cycles are checked on module-level imports only: those run while a module is half-initialised,
so a cycle among them is an ImportError or a missing name waiting for the right import order.
An import inside a function runs when the function is called, after every module has loaded,
and several are deliberate (role.py opens the store only after fork; the CLI loads a
sub-command's module only when it runs).  But one that closes a cycle is a design choice to
explain: it must carry a comment, on its line or right above it, saying why.
"""
from __future__ import annotations

import ast
import functools
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_IO = ("socket", "requests", "aiohttp", "websockets", "lmdb", "posix_ipc", "subprocess", "web3")
RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    # rule: (folder or file, modules it must never import)
    "core knows no chain, arbitrage or roles": (
        "engine/core", ("engine.arb", "engine.chain", "engine.devnet", "roles", "web3", "eth_abi",
                        "eth_account", "scripts")),
    "arb is pure": ("engine/arb", ("engine.core", "engine.chain", "roles") + _IO),
    "config is pure": ("engine/config.py", ("engine.core", "engine.chain", "engine.arb",
                                            "engine.bench", "roles", "scripts") + _IO),
    "the config schema is pure": ("engine/config_schema.py", ("engine.core", "engine.chain",
                                  "engine.arb", "engine.bench", "roles", "scripts") + _IO),
    "the config's chains are pure": ("engine/config_chains.py", ("engine.core", "engine.chain",
                                     "engine.arb", "engine.bench", "roles", "scripts") + _IO),
    "chain builds on arb and core only": ("engine/chain", ("roles", "scripts", "engine.cli",
                                                           "engine.bench", "engine.devnet")),
    "devnet builds on chain and arb only": ("engine/devnet", ("engine.core", "roles", "scripts",
                                                             "engine.cli", "engine.bench")),
}


# ── reading imports ──────────────────────────────────────────────────────────────────────────

def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> list[tuple[str, bool, int]]:
    """(module or module.name, inside a function?, line) for each name an import brings in.
    `from pkg import name` yields pkg.name, so `from engine import arb` is seen as engine.arb.
    Blocks under `if TYPE_CHECKING:` never run and are skipped."""
    return _parsed(path.relative_to(root).with_suffix("").parts, path.read_text())


@functools.lru_cache(maxsize=None)   # the planting tests read the same copies many times
def _parsed(parts: tuple[str, ...], source: str) -> list[tuple[str, bool, int]]:
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, inner, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                mod = child.module or ""
                if child.level:
                    pkg = parts[:-child.level]
                    mod = ".".join(pkg + ((mod,) if mod else ()))
                out.extend((f"{mod}.{a.name}" if mod else a.name, inner, child.lineno)
                           for a in child.names)
            visit(child, inner)

    visit(ast.parse(source, "/".join(parts) + ".py"), False)
    return out


def imports(path: Path, root: Path = ROOT) -> set[str]:
    return {name for name, _, _ in _imports(path, root)}


def _files(target: str, root: Path) -> list[Path]:
    p = root / target
    files = [p] if p.is_file() else sorted(p.rglob("*.py"))
    if not files:   # a moved folder must not leave a rule checking nothing
        raise ValueError(f"{p}: no Python file to check")
    return files


def offenders(target: str, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """`file imports module` for each import under target (a folder or a file) of a forbidden
    module or anything inside it."""
    if not forbidden:
        raise ValueError("a rule that forbids nothing cannot fail")
    bad = []
    for f in _files(target, root):
        for m in sorted(imports(f, root)):
            if any(m == x or m.startswith(x + ".") for x in forbidden):
                bad.append(f"{f.relative_to(root)} imports {m}")
    return bad


# ── the import graph of engine/ ──────────────────────────────────────────────────────────────

def import_graph(root: Path = ROOT, folder: str = "engine"):
    """({module: {module it imports at module level}}, [(module, imported, line)] of the
    imports inside functions), both restricted to modules under folder."""
    modules = {_module(f, root): f for f in _files(folder, root)}

    def resolve(name: str) -> str | None:   # pkg.name: the submodule if it is one, else pkg
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    lazy = []
    for m, f in modules.items():
        for name, in_function, line in _imports(f, root):
            target = resolve(name)
            if target is None or target == m:
                continue
            if in_function:
                lazy.append((m, target, line))
            else:
                graph[m].add(target)
    return graph, lazy, modules


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain start → … → goal, or None."""
    came = {start: None}
    todo = [start]
    while todo:
        nxt = []
        for u in todo:
            if u == goal:
                chain = []
                while u is not None:
                    chain.append(u)
                    u = came[u]
                return chain[::-1]
            for v in sorted(graph[u]):
                if v not in came:
                    came[v] = u
                    nxt.append(v)
        todo = nxt
    return None


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """One `a -> b -> … -> a` per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for group in groups:
        first = group[0]
        back = min((_path(graph, w, first) for w in graph[first] if w in group), key=len)
        out.append(" -> ".join([first] + back))
    return out


def undocumented_lazy_cycles(root: Path = ROOT) -> list[str]:
    """Imports inside functions that would close a cycle, without a comment saying why."""
    graph, lazy, modules = import_graph(root)
    bad = []
    for m, target, line in lazy:
        back = _path(graph, target, m)
        if back is None:
            continue
        lines = modules[m].read_text().splitlines()
        here, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
        if "#" not in here and not above.startswith("#"):
            bad.append(f"{modules[m].relative_to(root)}:{line}: {m} imports {target} in a "
                       f"function, closing {' -> '.join([m] + back)}, with no comment saying why")
    return bad


# ── the rules ────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("rule", RULES)
def test_floor(rule):
    target, forbidden = RULES[rule]
    assert offenders(target, forbidden) == []


def test_engine_has_no_import_cycle():
    graph, _, _ = import_graph()
    assert len(graph) > 30, "the graph was not read"   # guards the rule against reading nothing
    assert cycles(graph) == []


def test_imports_in_functions_that_close_a_cycle_say_why():
    assert undocumented_lazy_cycles() == []


# ── every rule can fail ──────────────────────────────────────────────────────────────────────

def _copy(target: str, root: Path) -> Path:
    src, dst = ROOT / target, root / target
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    else:
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _spellings(forbidden: str, target: str) -> list[str]:
    """Ways to import module `forbidden` from a file under target."""
    parent, _, last = forbidden.rpartition(".")
    out = [f"import {forbidden}\n",
           f"from {forbidden} import anything\n",
           f"def later():\n    import {forbidden}\n"]
    if parent:
        out.append(f"from {parent} import {last}\n")
    package = target.split("/")[:-1] if target.endswith(".py") else target.split("/")
    top, _, rest = forbidden.partition(".")
    if top == package[0] and rest:     # inside our package: also the relative form
        out.append(f"from {'.' * len(package)}{rest} import anything\n")
    return out


@pytest.mark.parametrize("rule", RULES)
def test_each_floor_catches_every_planted_import(rule, tmp_path):
    target, forbidden = RULES[rule]
    copy = _copy(target, tmp_path)
    planted = copy if copy.is_file() else copy / "planted.py"
    original = planted.read_text() if copy.is_file() else ""
    root = tmp_path
    for module in forbidden:
        for source in _spellings(module, target):
            planted.write_text(original + "\n" + source)
            found = offenders(target, forbidden, root)
            assert len(found) == 1 and found[0].startswith(str(planted.relative_to(root))), \
                (rule, source, found)
            assert module in found[0], (rule, source, found)
    with pytest.raises(ValueError, match="forbids nothing"):
        offenders(target, ())
    with pytest.raises(ValueError, match="no Python file"):
        offenders(target + "-moved", forbidden, root)


def _plant(root: Path, module: str, source: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + "\n" + source)


def test_a_planted_import_cycle_is_caught_and_named(tmp_path):
    _copy("engine", tmp_path)
    graph, _, _ = import_graph(tmp_path)
    assert cycles(graph) == []
    # keys.py is imported by writer.py (through reader.py and directly): make it import back.
    _plant(tmp_path, "engine.core.store.keys", "from .writer import WritableStore\n")
    graph, _, _ = import_graph(tmp_path)
    found = cycles(graph)
    assert len(found) == 1, found
    chain = found[0].split(" -> ")
    assert chain[0] == chain[-1] and {"engine.core.store.keys", "engine.core.store.writer"} <= set(chain)
    # A second, separate one, spelt `from package import module`: v3.py imports types.py.
    _plant(tmp_path, "engine.arb.types", "from engine.arb import v3\n")
    graph, _, _ = import_graph(tmp_path)
    assert len(cycles(graph)) == 2


def test_a_lazy_import_closing_a_cycle_needs_a_comment(tmp_path):
    _copy("engine", tmp_path)
    assert undocumented_lazy_cycles(tmp_path) == []
    _plant(tmp_path, "engine.core.store.keys",
           "def later():\n    from .writer import WritableStore\n    return WritableStore\n")
    graph, _, _ = import_graph(tmp_path)
    assert cycles(graph) == []          # inside a function: not a module-level cycle
    (found,) = undocumented_lazy_cycles(tmp_path)
    assert "engine/core/store/keys.py" in found and "engine.core.store.writer" in found
    _plant(tmp_path, "engine.core.store.keys",
           "def documented():\n    # why: writer.py builds on keys.py\n"
           "    from .writer import WritableStore\n    return WritableStore\n")
    assert len(undocumented_lazy_cycles(tmp_path)) == 1   # the commented one passes
