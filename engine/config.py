"""engine.toml: loading, validation and defaults.

Validation is strict because a bot that runs for money must not start half-configured: an
unknown key, a wrong type, an impossible value or a missing file is one `ConfigError` naming the
key (and its line in the file when it can be found), and `syndicate run` exits 2 with nothing
started.  Every default lives in SCHEMA (engine/config_schema.py), which is also what the README's configuration
reference describes.

A role is named by engine.toml and built from `kind`, a dotted path "package.module:Class".
This module never imports it (engine/core knows roles only by name): the supervisor resolves it
after fork.  What a kind declares (options, tasks, source: RoleKind in engine/core/role.py)
reaches this module as data, a `KindSpec` from the `describe` callback given to `load`.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .config_schema import (  # noqa: F401  (the schema, re-exported)
    DEFAULT_ROLES, CHAINS, RESTART_POLICIES, PRIORITIES, _NAME_RE, _SIZE_RE,
    _SIZE_UNITS, parse_size, _pos, _nonneg, _choice, _pow2,
    _size, _rt_prio, NUM, SCHEMA, _addresses, _urls,
    CHAIN_SCHEMA, ROLE_SCHEMA, _listen, _ENV, _URL, MORALIS_ROLE,
    MORALIS_SCHEMA, TASK_SCHEMA, BLOCK_TIMES, SUBMIT_SCHEMA, ENDPOINT_SCHEMA, EXECUTOR_KINDS, check_live_key,
    AGENT_KINDS, COORDINATOR_KIND,
)
from .config_chains import load_manifest, networks


class ConfigError(ValueError):
    """Bad engine.toml: the message names the key and, when known, the line."""


@dataclass(frozen=True)
class KindSpec:
    """What a role kind lets engine.toml say about it (see RoleKind in engine/core/role.py).

    options: `roles.<name>.options` keys -> (type, default, one-line doc); float accepts an int
    tasks:   task names it may run -> that task's `options` keys, declared the same way
    source:  it writes event rings, so it needs `chains`"""
    options: dict[str, tuple]
    tasks: dict[str, dict[str, tuple]]
    source: bool = False


def _declared_schema(declared: dict[str, tuple]) -> dict[str, tuple[Any, Any, Any]]:
    """A kind's declaration as a SCHEMA table: the same checks as every other key."""
    return {key: (typ, default, None) for key, (typ, default, _doc) in declared.items()}


@dataclass(frozen=True)
class RoleConfig:
    name: str
    kind: str
    enabled: bool = True
    chains: tuple[str, ...] = ()
    restart: str = "permanent"
    memory_soft: int = 256 << 20
    memory_hard: int = 512 << 20
    max_concurrent: int = 5
    slice_budget_us: int = 200
    subscribe: bool | str = True      # True, False or "quiet" (read, never interrupted)
    inbox: str = "none"
    # Named roles whose outboxes this role reads directly, interrupted by them (filled in by
    # the configuration: every monitor reads the Moralis receiver's); such an outbox is then
    # not broadcast to the inbox = "interrupt"/"poll" roles.
    reads: tuple[str, ...] = ()
    options: dict = field(default_factory=dict, hash=False, compare=True)
    tasks: dict = field(default_factory=dict, hash=False, compare=True)
    # optional tasks (Task.optional) an engine-wide switch turns on: [tasks] checksum
    optional_tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineConfig:
    path: Path
    base_dir: Path
    engine: dict
    supervisor: dict
    watchdog: dict
    switch: dict
    rings: dict
    store: dict
    tasks: dict
    chains: dict
    roles: dict[str, RoleConfig]
    manifest: dict | None = None     # the loaded [chains] manifest, if one is named
    moralis: dict | None = None      # [moralis], when present (max_body in bytes)
    networks: dict = field(default_factory=dict)   # chain -> [chains.<chain>] merged with the manifest
    metrics: dict = field(default_factory=lambda: {"listen": "", "buckets_per_octave": 2})
    devnet: dict = field(default_factory=lambda: {"managed": False})

    @property
    def name(self) -> str:
        return self.engine["name"]

    def resolve(self, p: str) -> Path:
        return _resolve(self.base_dir, p)

    @property
    def paths(self) -> "EnginePaths":
        return EnginePaths.of(self.base_dir, self.name, self.engine["state_dir"],
                              self.store["path"])

    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir

    @property
    def run_dir(self) -> Path:
        return self.paths.run_dir

    @property
    def log_path(self) -> Path:
        return self.paths.log_path

    @property
    def store_path(self) -> Path:
        return self.paths.store_path


def _resolve(base: Path, p: str) -> Path:
    q = Path(os.path.expanduser(p))
    return q if q.is_absolute() else base / q


@dataclass(frozen=True)
class EnginePaths:
    """Where an engine keeps its files: the one place this is derived."""
    name: str
    state_dir: Path
    run_dir: Path
    log_path: Path
    store_path: Path

    @classmethod
    def of(cls, base: Path, name: str, state_dir: str, store_path: str = "") -> "EnginePaths":
        state = _resolve(base, state_dir)
        return cls(name, state, state / "run" / name, state / "log" / f"{name}.log",
                   _resolve(base, store_path) if store_path else state / "lmdb" / name)


def locate(path: str | os.PathLike, name: str | None = None, *,
           path_given: bool = True) -> EnginePaths:
    """An engine's paths for the operator's commands (`ctl`, `status`), read leniently: only
    [engine] name and state_dir and [store] path, so a file being edited (or broken) does not
    lock the operator out of a running engine.  With --name, an unreadable file that was not
    asked for explicitly falls back to the defaults."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if path_given or not name:
            raise ConfigError(f"{path}: no such file (pass -c PATH or --name NAME)")
        raw = {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        if not name:
            raise ConfigError(f"{path}: cannot read the engine name: {e}")
        raw = {}
    eng = raw.get("engine") if isinstance(raw.get("engine"), dict) else {}
    store = raw.get("store") if isinstance(raw.get("store"), dict) else {}
    return EnginePaths.of(path.resolve().parent, name or str(eng.get("name", "syndicate")),
                          str(eng.get("state_dir", SCHEMA["engine"]["state_dir"][1])),
                          str(store.get("path", "")))


def _line_of(text: str, section: str | None, key: str | None) -> int | None:
    """Best-effort line number of `key` inside `[section]` (tomllib reports none)."""
    lines = text.splitlines()
    start = 0
    if section:
        parts = section.split(".")
        pat = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(
            rf'(?:"{re.escape(p)}"|{re.escape(p)})' for p in parts) + r"\s*\]\s*(#.*)?$")
        for i, line in enumerate(lines):
            if pat.match(line):
                start = i
                if key is None:
                    return i + 1
                break
        else:
            # an inline table (`leaf = { ... }`) or dotted keys (`leaf.x = ...`) in the parent
            parent = ".".join(parts[:-1]) or None
            return _line_of(text, parent, parts[-1]) if parent else None
    if key is None:
        return None
    kpat = re.compile(rf'^\s*"?{re.escape(key)}"?\s*[=.]|[{{,]\s*"?{re.escape(key)}"?\s*=')
    for i in range(start, len(lines)):
        if i > start and re.match(r"^\s*\[", lines[i]) and section:
            break
        if kpat.search(lines[i]):
            return i + 1
    return None


class _Checker:
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def fail(self, section: str | None, key: str | None, msg: str) -> ConfigError:
        dotted = ".".join(x for x in (section, key) if x)
        # a key that is missing (or not found) is reported at its section's line
        line = _line_of(self.text, section, key) or (key and _line_of(self.text, section, None))
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {dotted}: {msg}")

    def table(self, section: str, raw: Any, schema: dict) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(None, section, f"must be a table, not {type(raw).__name__}")
        unknown = sorted(set(raw) - set(schema))
        if unknown:
            raise self.fail(section, unknown[0], f"unknown key (known: {', '.join(sorted(schema))})")
        out = {}
        for key, (typ, default, check) in schema.items():
            if key not in raw:
                out[key] = default
                continue
            v = raw[key]
            types = typ if isinstance(typ, tuple) else (typ,)
            if float in types:
                types = (*types, int)   # TOML writes 1 for 1.0
            if isinstance(v, bool) and bool not in types:
                ok = False
            else:
                ok = isinstance(v, types)
            if not ok:
                want = " or ".join(t.__name__ for t in types)
                raise self.fail(section, key, f"must be {want}, not {type(v).__name__} ({v!r})")
            if check and (err := check(v)):
                raise self.fail(section, key, f"{err} (got {v!r})")
            out[key] = v
        return out


Describe = Callable[[str], KindSpec]   # a kind's dotted path -> what it declares


def load(path: str | os.PathLike, *, describe: Describe | None = None,
         check_env: bool = True, patch: dict | None = None) -> EngineConfig:
    """Read and check engine.toml.  With `describe` (the supervisor passes
    engine.core.role.describe_kind), each enabled role's kind is resolved and its options and
    tasks are checked against what it declares; a kind that cannot be resolved is refused.
    check_env: refuse a [moralis] whose secret variable is unset (off for tools that do not
    run the receiver, e.g. `syndicate moralis sync`).  patch: {section: {key: value}} laid
    over the file's sections before the checks (the managed devnet's manifest and mode)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (pass -c PATH to name the configuration)")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}")
    for sec, keys in (patch or {}).items():
        raw[sec] = {**(raw.get(sec) if isinstance(raw.get(sec), dict) else {}), **keys}
    return from_dict(raw, path=path.resolve(), text=text, describe=describe, check_env=check_env)


def from_dict(raw: dict, *, path: Path = Path("engine.toml"), text: str = "",
              describe: Describe | None = None, check_env: bool = True) -> EngineConfig:
    ck = _Checker(path, text)
    known = set(SCHEMA) | {"roles", "moralis"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ck.fail(unknown[0], None, f"unknown section (known: {', '.join(sorted(known))})")
    raw_chains = raw.get("chains", {})
    raw_networks = {}
    if isinstance(raw_chains, dict):   # [chains.<name>] tables are checked by _networks
        raw_networks = {k: v for k, v in raw_chains.items() if k in CHAINS}
        raw = {**raw, "chains": {k: v for k, v in raw_chains.items() if k not in CHAINS}}
    sections = {s: ck.table(s, raw.get(s, {}), schema) for s, schema in SCHEMA.items()}

    sw = sections["switch"]
    if sw["role_rt_priority"] >= sw["monitor_rt_priority"]:
        raise ck.fail("switch", "role_rt_priority",
                      "must be below monitor_rt_priority: a boosted role must never preempt the "
                      "monitor that is still signalling the others")
    sup = sections["supervisor"]
    if sup["backoff_max"] < sup["backoff_initial"]:
        raise ck.fail("supervisor", "backoff_max", "must be >= backoff_initial")

    raw_roles = raw.get("roles")
    if raw_roles is None:
        raise ck.fail(None, "roles", "no [roles.NAME] tables: nothing to run")
    if not isinstance(raw_roles, dict):
        raise ck.fail(None, "roles", "must be a table of [roles.NAME] tables")
    roles: dict[str, RoleConfig] = {}
    for name, rr in raw_roles.items():
        sec = f"roles.{name}"
        if not _NAME_RE.match(name):
            raise ck.fail(sec, None, "role names are lowercase letters, digits and '-', "
                                     "at most 31 chars, starting with a letter")
        t = ck.table(sec, rr, ROLE_SCHEMA)
        if t["kind"] is None:
            raise ck.fail(sec, None, 'missing key "kind" (a dotted path "package.module:Class")')
        for c in t["chains"]:
            if c not in CHAINS:
                raise ck.fail(sec, "chains", f"unknown chain {c!r} (known: {', '.join(CHAINS)})")
        if parse_size(t["memory_soft"]) > parse_size(t["memory_hard"]):
            raise ck.fail(sec, "memory_soft", "must not exceed memory_hard")
        tasks = {}
        for tname, traw in t["tasks"].items():
            tasks[tname] = ck.table(f"{sec}.tasks.{tname}", traw, TASK_SCHEMA)
        if describe is not None and t["enabled"]:
            _check_declared(ck, sec, t, tasks, describe)
        roles[name] = RoleConfig(
            name=name, kind=t["kind"], enabled=t["enabled"], chains=tuple(t["chains"]),
            restart=t["restart"], memory_soft=parse_size(t["memory_soft"]),
            memory_hard=parse_size(t["memory_hard"]),
            max_concurrent=t["max_concurrent"] or sections["tasks"]["max_concurrent"],
            slice_budget_us=t["slice_budget_us"] or sections["tasks"]["slice_budget_us"],
            subscribe=t["subscribe"], inbox=t["inbox"], options=t["options"], tasks=tasks,
            optional_tasks=("checksum",) if sections["tasks"]["checksum"] else ())
    _hear_the_coordinator(roles)
    moralis = _moralis(ck, raw, roles, check_env) if "moralis" in raw else None
    if check_env:
        base_dir = path.parent if path.name else Path.cwd()
        check_live_key(sections["engine"]["mode"], roles, ck.fail,
                       lambda p: _resolve(base_dir, p), os.environ)
    if not any(r.enabled for r in roles.values()):
        raise ck.fail(None, "roles", "every role is disabled: nothing to run")
    base = path.parent if path.name else Path.cwd()
    manifest = None
    if sections["chains"]["manifest"]:
        manifest = load_manifest(_resolve(base, sections["chains"]["manifest"]), lambda msg: ck.fail("chains", "manifest", msg))
    return EngineConfig(path=path, base_dir=base, roles=roles, manifest=manifest,
                        moralis=moralis, networks=networks(ck, raw_networks, manifest),
                        **sections)


def _read_directly(roles: dict, kinds, writers) -> None:
    """Every role of one of `kinds` reads the outboxes of `writers` (role names) directly,
    interrupted by them; such an outbox then goes to those readers only (wiring.plan_rings),
    not to the inbox roles."""
    for name, r in roles.items():
        add = tuple(w for w in writers if w not in r.reads and w != name)
        if r.kind in kinds and add:
            roles[name] = replace(r, reads=(*r.reads, *add))


def _hear_the_coordinator(roles: dict) -> None:
    """Every agent reads the enabled coordinators' outboxes: a coordinator announces each
    model version there (roles/learning.py), so the executor no longer reads them."""
    _read_directly(roles, AGENT_KINDS,
                   [n for n, r in roles.items() if r.enabled and r.kind == COORDINATOR_KIND])


def _moralis(ck: _Checker, raw: dict, roles: dict, check_env: bool) -> dict:
    """[moralis] checked; adds the receiver role unless [roles.moralis-receiver] is written out.
    The role's options carry the section, so a reload that changes it restarts the receiver."""
    m = ck.table("moralis", raw["moralis"], MORALIS_SCHEMA)
    m["max_body"] = parse_size(m["max_body"])
    var = m["secret_env"]
    if check_env and not os.environ.get(var):
        where = "secret_env" if "secret_env" in raw["moralis"] else None
        raise ck.fail("moralis", where, f"environment variable {var} is not set (it must hold the "
                      "Moralis Streams secret that signs the webhooks; the receiver refuses "
                      "every delivery without it)")
    if MORALIS_ROLE not in roles:
        roles[MORALIS_ROLE] = RoleConfig(name=MORALIS_ROLE, kind="roles.webhook:MoralisReceiver",
                                         subscribe=False, options={"moralis": dict(m)})
    # The hand-off (DEVELOPING.md): every chain monitor reads the receiver's outbox directly.
    _read_directly(roles, ("roles.monitor:ChainMonitor",), [MORALIS_ROLE])
    return m


def _check_declared(ck: _Checker, sec: str, t: dict, tasks: dict, describe: Describe) -> None:
    """A role's options and tasks against what its kind declares (KindSpec)."""
    try:
        spec = describe(t["kind"])
    except (ImportError, TypeError) as e:
        raise ck.fail(sec, "kind", str(e))
    ck.table(f"{sec}.options", t["options"], _declared_schema(spec.options))
    for tname, tc in tasks.items():
        if tname not in spec.tasks:
            raise ck.fail(f"{sec}.tasks.{tname}", None, "unknown task (known: "
                          f"{', '.join(sorted(spec.tasks)) or 'none: this kind runs no tasks'})")
        ck.table(f"{sec}.tasks.{tname}.options", tc["options"],
                 _declared_schema(spec.tasks[tname]))
    if spec.source and not t["chains"]:
        raise ck.fail(sec, "chains", "a source role needs the chains it watches")


def error_at(cfg: EngineConfig, section: str, key: str | None, msg: str) -> ConfigError:
    """A ConfigError for a value that checked out but cannot be used (an address in use),
    naming the key and its line as the load-time checks do."""
    try:
        text = cfg.path.read_text()
    except OSError:
        text = ""
    return _Checker(cfg.path, text).fail(section, key, msg)


def with_overrides(cfg: EngineConfig, **engine: Any) -> EngineConfig:
    """A copy with [engine] keys replaced (used by `syndicate run --name`)."""
    new_engine = {**cfg.engine, **{k: v for k, v in engine.items() if v is not None}}
    if not _NAME_RE.match(new_engine["name"]):
        raise ConfigError(f"--name {new_engine['name']!r}: must be lowercase letters, digits "
                          "and '-', 1-31 chars, starting with a letter")
    return EngineConfig(**{**cfg.__dict__, "engine": new_engine})


# ------------------------------------------------------------------------------ writing
def render(doc: dict) -> str:
    """engine.toml text for a dict of its sections ({"engine": {...}, "roles": {name: {...}}}):
    for tools and tests that generate a configuration."""
    out = []
    for section, body in doc.items():
        tables = body.items() if section == "roles" else [(None, body)]
        for name, table in tables:
            out.append(f"[roles.{name}]" if name else f"[{section}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
            out.append("")
    return "\n".join(out)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}: {v!r}")
