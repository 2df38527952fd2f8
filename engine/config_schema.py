"""engine.toml's schema: every section and key with its type, default and check, and the
value checks they use.  Pure data and functions (engine/config.py reads the file, applies these
and builds the configuration); every default lives here, which is also what the README's
configuration reference describes.
"""
from __future__ import annotations

import re
from typing import Any

DEFAULT_ROLES = ("arbitrum-spotter", "base-analyst", "polygon-specialist",
                 "flash-loan-executor", "alphago-coordinator")
CHAINS = {"arbitrum": 42161, "base": 8453, "polygon": 137}
RESTART_POLICIES = ("permanent", "transient", "temporary")
PRIORITIES = ("low", "medium", "high", "critical")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")



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
        # "live" signs and sends (the executor role: a key from the environment or a keystore)
        "mode": (str, "paper", _choice("paper", "live")),
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
        "slot_size": (int, 1024, lambda v: None if v >= 64 and v % 64 == 0 else
                      "must be a multiple of 64, >= 64"),
        # the roles' outboxes (out.<role>): an agent's decision with a three-hop Action is
        # ~1.7 KiB of JSON (a pool record in events.<chain> fits 256 bytes)
        "outbox_slot_size": (int, 2048, lambda v: None if v >= 64 and v % 64 == 0 else
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
        # every role that declares it also runs the checksum task, continuously (README,
        # "Background work"); off: only the roles whose [roles.<name>.tasks.checksum] asks
        "checksum": (bool, False, None),
    },
    "chains": {
        # the JSON manifest `syndicate devnet up --manifest PATH` writes (chains, RPC and
        # WebSocket URLs, tokens, pools): roles take their chains' endpoints from it
        "manifest": (str, "", None),
    },
    "metrics": {
        # "host:port" the supervisor serves Prometheus's GET /metrics on ("": off)
        "listen": (str, "", lambda v: None if v == "" else _listen([v])),
        # `le` edges per octave of the latency histograms (the control block keeps 4)
        "buckets_per_octave": (int, 2, _choice(1, 2, 4)),
    },
    "devnet": {
        # `syndicate run` starts the local anvil devnet itself (engine/devnet/managed.py) and
        # trades on it; off as soon as the file names endpoints ([chains] manifest, rpc, ws)
        "managed": (bool, False, None),
        "traffic": (NUM, 5.0, _pos),       # swaps per second of the traffic generator
        "rival": (NUM, 0.5, lambda v: None if 0 <= v <= 1 else "must be in 0..1 (a share of the pools)"),
        "seed": (int, 0, _nonneg),
        # "live": the executor signs with anvil's dev account 1, only against anvil
        "trade": (str, "live", _choice("live", "paper")),
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


_ENV_REF = re.compile(r"\$\{([A-Za-z_]\w*)\}")
ENV_KEYS = ("rpc", "ws")     # [chains.<name>] keys whose URLs may name environment variables


def expand_env(chain: str, t: Any, fail, environ) -> Any:
    """`rpc = ["${ARBITRUM_RPC_URL}"]`: each ${NAME} in an endpoint URL replaced by that
    environment variable, so a provider's key stays out of the file.  An unset or empty one
    is refused (`fail(section, key, msg)` builds the error, naming the key and its line)."""
    if not isinstance(t, dict):
        return t
    out = dict(t)
    for key in ENV_KEYS:
        if not isinstance(t.get(key), list):
            continue

        def sub(m: re.Match, key=key) -> str:
            if not environ.get(m.group(1)):
                raise fail(f"chains.{chain}", key, f"environment variable {m.group(1)} is not "
                           "set (it must hold this endpoint's URL)")
            return environ[m.group(1)]
        out[key] = [_ENV_REF.sub(sub, u) if isinstance(u, str) else u for u in t[key]]
    return out


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
    "executor": (str, "", lambda v: None if v == "" or re.match(r"^0x[0-9a-fA-F]{40}$", v) else
                 "must be a 0x-prefixed 20-byte hex address"),  # the FlashArbExecutor contract
    "block_time": (NUM, None, _pos),                # seconds; default BLOCK_TIMES[chain]
    "submit": (dict, {}, None),                     # [chains.<name>.submit]: SUBMIT_SCHEMA
}
# Seconds between blocks, for the executor's staleness check (block_time x stale_factor).
BLOCK_TIMES = {"arbitrum": 0.25, "base": 2.0, "polygon": 2.0}
# [chains.<name>.submit]: the ordered endpoints a signed transaction goes to (engine/chain/submit.py)
SUBMIT_SCHEMA: dict[str, tuple[Any, Any, Any]] = {"endpoints": (list, [], None)}
ENDPOINT_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "kind": (str, None, _choice("sequencer", "public", "private", "timeboost")),
    "url": (str, None, lambda v: None if re.match(r"^https?://[^\s/]+", v) else "must be an http(s) URL"),
    "method": (str, "", _choice("", "polygon_private_tx", "eth_sendRawTransaction")),
    "auth_env": (str, "", lambda v: None if v == "" or re.match(r"^[A-Za-z_]\w*$", v) else
                 "must be the NAME of an environment variable (never the secret itself)"),
    "auction": (str, "", lambda v: None if v == "" or re.match(r"^0x[0-9a-fA-F]{40}$", v) else
                "must be a 0x-prefixed 20-byte hex address"),
    "timeout": (NUM, 2.0, _pos),
}
# Role kinds that sign: `mode = "live"` needs their key at load (exit 2 otherwise).
EXECUTOR_KINDS = ("roles.executor:Executor", "roles.agents:Executor")
# the agents that price events and filter with the coordinator's model: each reads the
# coordinator's outbox, where it announces every new model version (DEVELOPING.md)
AGENT_KINDS = ("roles.agents:Agent", "roles.agents:Spotter", "roles.agents:Analyst",
               "roles.agents:Specialist")
COORDINATOR_KIND = "roles.agents:Coordinator"
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
    # true: read the chains' events rings and be interrupted by them; "quiet": read them
    # (drained at each switch the inbox causes), never interrupted by them; false: neither
    "subscribe": ((bool, str), True, lambda v: None if v in (True, False, "quiet") else
                  'must be true, false or "quiet"'),
    "inbox": (str, "none", _choice("none", "interrupt", "poll")),
    "options": (dict, {}, None),
    "tasks": (dict, {}, None),
}


def _listen(v):
    bad = [x for x in v if not isinstance(x, str) or not re.match(r"^\S+:\d{1,5}$", x)
           or not 0 < int(x.rsplit(":", 1)[1]) < 65536]
    return (f'each listener must be "host:port" with a port in 1..65535, not {bad[0]!r}' if bad
            else None if v else "must name at least one listener")


_ENV = lambda v: None if re.match(r"^[A-Za-z_]\w*$", v) else \
    "must be the NAME of an environment variable (never the secret itself)"  # noqa: E731
_URL = lambda v: None if v == "" or re.match(r"^https?://[^\s/]+", v) else "must be an http(s) URL"  # noqa: E731
# [moralis]: the Streams webhook receiver (roles/webhook.py), enabled when the section is present;
# webhook_url (the public HTTPS URL Moralis posts to) and api_url serve `syndicate moralis sync`.
MORALIS_ROLE = "moralis-receiver"
MORALIS_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "listen": (list, ["127.0.0.1:8787"], _listen),
    "path": (str, "/webhooks/moralis", lambda v: None if v.startswith("/") else "must start with /"),
    "secret_env": (str, "MORALIS_STREAMS_SECRET", _ENV), "max_body": ((str, int), "4MiB", _size),
    "api_key_env": (str, "MORALIS_API_KEY", _ENV), "webhook_url": (str, "", _URL),
    "api_url": (str, "https://api.moralis-streams.com", _URL),
    # seconds a processed delivery stays in the inbox (roles/inbox_trim.py TrimInbox)
    "keep": (NUM, 86400.0, _pos),
}
TASK_SCHEMA: dict[str, tuple[Any, Any, Any]] = {
    "enabled": (bool, True, None),
    "interval": (NUM, None, _nonneg),
    "priority": (str, None, _choice(*PRIORITIES)),
    "options": (dict, {}, None),
}


def check_live_key(mode: str, roles: dict, fail, resolve, environ) -> None:
    """mode = "live": every enabled executor role must find its key; `fail(section, key, msg)`
    builds the error.  Only variable and file names are read here, never a key."""
    if mode != "live":
        return
    for name, r in roles.items():
        if not r.enabled or r.kind not in EXECUTOR_KINDS:
            continue
        o, sec = r.options, f"roles.{name}.options"
        if o.get("keystore"):
            path = resolve(o["keystore"])
            if not path.is_file():
                raise fail(sec, "keystore", f"{path}: no such file")
            var = o.get("password_env") or ""
            if not var or environ.get(var) is None:
                raise fail(sec, "password_env", 'mode = "live" with a keystore needs its password '
                           f"in an environment variable ({var or 'password_env is not set'})")
        else:
            var = o.get("key_env") or "SYNDICATE_EXECUTOR_KEY"
            if not environ.get(var):
                raise fail("engine", "mode", f'"live" needs the executor\'s key in the environment '
                           f"variable {var} (or roles.{name}.options keystore and password_env)")
