"""engine.toml: loading, validation and defaults.

Validation is strict because a bot that runs for money must not start half-configured: an
unknown key, a wrong type, an impossible value or a missing file is one `ConfigError` naming the
key (and its line in the file when it can be found), and `syndicate run` exits 2 with nothing
started.  Every default lives in SCHEMA below, which is also what the README's configuration
reference describes.

A role is named by engine.toml and built from `kind`, a dotted path "package.module:Class".
This module never imports it (engine/core knows roles only by name): the supervisor resolves it
after fork.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROLES = ("arbitrum-spotter", "base-analyst", "polygon-specialist",
                 "flash-loan-executor", "alphago-coordinator")
CHAINS = {"arbitrum": 42161, "base": 8453, "polygon": 137}
RESTART_POLICIES = ("permanent", "transient", "temporary")
PRIORITIES = ("low", "medium", "high", "critical")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class ConfigError(ValueError):
    """Bad engine.toml: the message names the key and, when known, the line."""


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size(text: str | int) -> int:
    """'256MiB' -> 268435456; plain integers are bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (write e.g. \"256MiB\" or \"1GiB\")")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


# ---------------------------------------------------------------------------------------------
# Schema: section -> key -> (type, default, check).  `check` returns an error text or None.
def _pos(v):
    return None if v > 0 else "must be > 0"


def _nonneg(v):
    return None if v >= 0 else "must be >= 0"


def _choice(*options):
    return lambda v: None if v in options else f"must be one of {', '.join(map(repr, options))}"


def _pow2(v):
    return None if v >= 2 and v & (v - 1) == 0 else "must be a power of two >= 2"


def _size(v):
    try:
        return None if parse_size(v) > 0 else "must be > 0"
    except ValueError as e:
        return str(e)


def _rt_prio(v):
    return None if 1 <= v <= 99 else "must be in 1..99 (SCHED_FIFO priority)"


NUM = (int, float)
SCHEMA: dict[str, dict[str, tuple[Any, Any, Any]]] = {
    "engine": {
        "name": (str, "syndicate", lambda v: None if _NAME_RE.match(v) else
                 "must be lowercase letters, digits and '-', 1-31 chars, starting with a letter"),
        "state_dir": (str, "var", None),
        "log_format": (str, "text", _choice("text", "json")),
        "log_level": (str, "info", _choice("debug", "info", "warning", "error")),
        "grace": (NUM, 5.0, _pos),
        "mode": (str, "paper", lambda v: None if v == "paper" else (
            'only "paper" for now: no role sends transactions yet (live trading comes with the '
            'trading issues and will need a key from the environment)' if v == "live" else
            'must be "paper"')),
    },
    "supervisor": {
        "max_restarts": (int, 5, _nonneg),
        "restart_window": (NUM, 30.0, _pos),
        "backoff_initial": (NUM, 0.05, _nonneg),
        "backoff_max": (NUM, 5.0, _nonneg),
    },
    "watchdog": {
        "interval_ms": (int, 250, _pos),
        "heartbeat_timeout": (NUM, 10.0, _pos),
        "abort_grace": (NUM, 2.0, _pos),
    },
    "switch": {
        "boost": (str, "fifo", _choice("fifo", "off")),
        "role_rt_priority": (int, 10, _rt_prio),
        "monitor_rt_priority": (int, 20, _rt_prio),
        "background_policy": (str, "nice", _choice("nice", "idle", "normal")),
        "background_nice": (int, 10, lambda v: None if 0 <= v <= 19 else "must be in 0..19"),
        "checkpoint_budget_us": (int, 300, _pos),
    },
    "rings": {
        "event_slots": (int, 4096, _pow2),
        "inbox_slots": (int, 1024, _pow2),
        "slot_size": (int, 512, lambda v: None if v >= 64 and v % 64 == 0 else
                      "must be a multiple of 64, >= 64"),
    },
    "store": {
        "path": (str, "", None),
        "durability": (str, "process", _choice("process", "periodic", "power")),
        "map_size": ((str, int), "1GiB", _size),
        "checkpoint_interval": (NUM, 60.0, _pos),
    },
    "tasks": {
        "max_concurrent": (int, 5, _pos),
        "slice_budget_us": (int, 200, _pos),
    },
    "chains": {
        # the JSON manifest `syndicate devnet up --manifest PATH` writes (chains, RPC and
        # WebSocket URLs, tokens, pools): roles take their chains' endpoints from it
        "manifest": (str, "", None),
    },
}
def _addresses(v):
    for a in v:
        if not (isinstance(a, str) and re.match(r"^0x[0-9a-fA-F]{40}$", a)):
            return f"must be a list of 0x-prefixed 20-byte hex addresses ({a!r} is not)"
    return None


def _urls(*schemes):
    def check(v):
        for u in v:
            if not (isinstance(u, str) and u.split("://", 1)[0] in schemes and "://" in u):
                return f"must be a list of {'/'.join(schemes)} URLs ({u!r} is not)"
        return None
    return check


# [chains.<name>]: what the chain monitor of that chain follows.  Endpoints and pools left
# empty are filled from the [chains] manifest when it serves that chain.
CHAIN_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "rpc": (list, [], _urls("http", "https")),      # HTTP JSON-RPC (pool reads, checks)
    "ws": (list, [], _urls("ws", "wss")),           # WebSocket JSON-RPC (subscriptions), ranked
    "pools": (list, [], _addresses),                # watched pools (V2 pairs / V3 pools)
    "factories": (list, [], _addresses),            # their new pools join the graph
    "chain_id": (int, None, _pos),                  # default: the chain's real id
    "threshold_bps": (int, 50, _nonneg),            # impact that interrupts the roles
    "reorg_depth": (int, 64, _pos),                 # blocks of undo kept
    "lag_blocks": (int, 3, _pos),                   # a node this far behind the best is demoted
    "backfill_blocks": (int, 2000, _pos),           # first eth_getLogs range (halved on refusal)
    "request_timeout": (NUM, 5.0, _pos),            # seconds for one JSON-RPC answer
    "retry_max": (NUM, 10.0, _pos),                 # reconnect backoff cap, seconds
    "drift_interval": (NUM, 30.0, _nonneg),         # seconds between drift checks (0: never)
}
ROLE_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "kind": (str, None, lambda v: None if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", v) else
             'must be a dotted path "package.module:Class"'),
    "enabled": (bool, True, None),
    "chains": (list, [], None),
    "restart": (str, "permanent", _choice(*RESTART_POLICIES)),
    "memory_soft": ((str, int), "256MiB", _size),
    "memory_hard": ((str, int), "512MiB", _size),
    "max_concurrent": (int, None, _pos),
    "slice_budget_us": (int, None, _pos),
    "subscribe": (bool, True, None),
    "inbox": (str, "none", _choice("none", "interrupt", "poll")),
    "options": (dict, {}, None),
    "tasks": (dict, {}, None),
}
TASK_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "enabled": (bool, True, None),
    "interval": (NUM, None, _nonneg),
    "priority": (str, None, _choice(*PRIORITIES)),
    "options": (dict, {}, None),
}


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
    subscribe: bool = True
    inbox: str = "none"
    options: dict = field(default_factory=dict, hash=False, compare=True)
    tasks: dict = field(default_factory=dict, hash=False, compare=True)


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
    networks: dict = field(default_factory=dict)   # chain -> [chains.<chain>] merged with the manifest

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
            # maybe an inline table: `name = { ... }` inside the parent section
            leaf = parts[-1]
            for i, line in enumerate(lines):
                if re.match(rf'^\s*"?{re.escape(leaf)}"?\s*=\s*\{{', line):
                    return i + 1
            return None
    if key is None:
        return None
    kpat = re.compile(rf'^\s*"?{re.escape(key)}"?\s*=|[{{,]\s*"?{re.escape(key)}"?\s*=')
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
        line = _line_of(self.text, section, key)
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


def load(path: str | os.PathLike) -> EngineConfig:
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
    return from_dict(raw, path=path.resolve(), text=text)


def from_dict(raw: dict, *, path: Path = Path("engine.toml"), text: str = "") -> EngineConfig:
    ck = _Checker(path, text)
    known = set(SCHEMA) | {"roles"}
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
        roles[name] = RoleConfig(
            name=name, kind=t["kind"], enabled=t["enabled"], chains=tuple(t["chains"]),
            restart=t["restart"], memory_soft=parse_size(t["memory_soft"]),
            memory_hard=parse_size(t["memory_hard"]),
            max_concurrent=t["max_concurrent"] or sections["tasks"]["max_concurrent"],
            slice_budget_us=t["slice_budget_us"] or sections["tasks"]["slice_budget_us"],
            subscribe=t["subscribe"], inbox=t["inbox"], options=t["options"], tasks=tasks)
    if not any(r.enabled for r in roles.values()):
        raise ck.fail(None, "roles", "every role is disabled: nothing to run")
    base = path.parent if path.name else Path.cwd()
    manifest = None
    if sections["chains"]["manifest"]:
        manifest = _load_manifest(_resolve(base, sections["chains"]["manifest"]), lambda msg: ck.fail("chains", "manifest", msg))
    return EngineConfig(path=path, base_dir=base, roles=roles, manifest=manifest,
                        networks=_networks(ck, raw_networks, manifest), **sections)


def _networks(ck: "_Checker", raw: dict, manifest: dict | None) -> dict[str, dict]:
    """Every chain's monitor settings: its [chains.<name>] table, with endpoints, pools and
    factories the table leaves empty taken from the manifest."""
    served = (manifest or {}).get("chains", {})
    out = {}
    for chain, cid in CHAINS.items():
        t = ck.table(f"chains.{chain}", raw.get(chain, {}), CHAIN_SCHEMA)
        m = served.get(chain)
        if m:
            if not t["rpc"]:
                t["rpc"] = [m["rpc_url"]]
            if not t["ws"] and str(m.get("ws_url", "")).startswith("ws"):
                t["ws"] = [m["ws_url"]]
            if not t["pools"] and not t["factories"]:
                t["pools"] = [p["address"] for p in m.get("pools", []) if isinstance(p, dict)
                              and "address" in p]
                t["factories"] = [d["factory"] for d in m.get("dexes", []) if isinstance(d, dict)
                                  and isinstance(d.get("factory"), str)]
            if t["chain_id"] is None and isinstance(m.get("chain_id"), int):
                t["chain_id"] = m["chain_id"]
        if t["chain_id"] is None:
            t["chain_id"] = cid
        t["pools"] = [a.lower() for a in t["pools"]]
        t["factories"] = [a.lower() for a in t["factories"]]
        out[chain] = t
    return out


def _load_manifest(path: Path, fail) -> dict:
    """The devnet manifest: {"chains": {name: {"chain_id", "rpc_url", "ws_url", ...}}}."""
    import json
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{path}: no such file (start the devnet with "
                   f"`syndicate devnet up --manifest {path}`)")
    except (OSError, ValueError) as e:
        raise fail(f"{path}: not a readable JSON manifest ({e})")
    chains = doc.get("chains") if isinstance(doc, dict) else None
    if not isinstance(chains, dict) or not chains:
        raise fail(f"{path}: no \"chains\" in this manifest")
    for name, c in chains.items():
        if name not in CHAINS:
            raise fail(f"{path}: unknown chain {name!r} (known: {', '.join(CHAINS)})")
        if not isinstance(c, dict) or not str(c.get("rpc_url", "")).startswith("http"):
            raise fail(f"{path}: chains.{name} has no http rpc_url")
    return doc


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
