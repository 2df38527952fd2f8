"""`syndicate snapshot PATH …`: read the engine's LMDB store offline, running engine or not.

    syndicate snapshot PATH info [--json]               schema, sizes, counts, last checkpoint per role
    syndicate snapshot PATH ls DB [--prefix P] [--limit N]   keys (prefix/seq), sizes, a preview
    syndicate snapshot PATH show DB KEY                 one value, pretty JSON (KEY: role/12, 0x…)
    syndicate snapshot PATH export [--db DB …] --format jsonl|csv [-o FILE]   streaming
    syndicate snapshot PATH copy DEST [--compact]       a consistent backup, engine running or not
    syndicate snapshot PATH verify [--tmp DIR]          structure of every page, then every value

Everything opens a ReadOnlyStore (engine/core/store/reader.py: a reader slot in lock.mdb, never a
write to data.mdb; lock=False would not be safe beside a live writer).  Reads happen in one
read transaction, so a listing or an export is one consistent point in time while roles keep
committing.  `verify` first copies the file (LMDB's copy is a raw page copy, consistent and
safe on damaged content), runs py-lmdb's pure-Python structural verifier on the copy (it never
hands the file to liblmdb, so a damaged page cannot crash it), then opens the copy and decodes
every value.  Exit codes: 0 fine, 1 verify found problems, 2 bad input (not a store, truncated,
foreign, unknown schema, bad arguments): one line on stderr naming what and where.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import struct
import sys
import tempfile
import time

import lmdb
import orjson

from engine.core.store import DATABASES, SEQ_DATABASES, ReadOnlyStore, StoreError, key_text, parse_key

PROG = "syndicate snapshot"


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump on stderr
        raise _Usage(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Read the engine's LMDB store offline (read-only).")
    p.add_argument("path", help="the store directory (engine.toml's store path)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    info = sub.add_parser("info", help="schema, sizes, counts, last checkpoint per role")
    info.add_argument("--json", action="store_true")
    ls = sub.add_parser("ls", help="list keys of a database")
    ls.add_argument("db", choices=DATABASES)
    ls.add_argument("--prefix", default="", help="keys starting with this (e.g. a role name)")
    ls.add_argument("--limit", type=int, default=0, help="at most N keys (0: all)")
    show = sub.add_parser("show", help="one value as pretty JSON")
    show.add_argument("db", choices=DATABASES)
    show.add_argument("key", help="role/seq in sequenced databases, time_ns in events, 0x… raw")
    exp = sub.add_parser("export", help="stream databases as JSON lines or CSV")
    exp.add_argument("--db", action="append", choices=DATABASES, help="repeatable; default all")
    exp.add_argument("--format", required=True, choices=("jsonl", "csv"))
    exp.add_argument("-o", "--output", help="file to write (default stdout)")
    cp = sub.add_parser("copy", help="consistent backup into DEST (new or empty directory)")
    cp.add_argument("dest")
    cp.add_argument("--compact", action="store_true", help="omit free pages (walks the tree)")
    ver = sub.add_parser("verify", help="check every page and decode every value")
    ver.add_argument("--tmp", help="directory for the temporary copy (default: the system's)")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except _Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:   # --help
        return int(e.code or 0)
    try:
        return _COMMANDS[args.command](args)
    except StoreError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except lmdb.Error as e:
        print(f"{PROG}: {args.path}: LMDB error, the file may be damaged: {e}", file=sys.stderr)
        return 2


def _open(path: str) -> ReadOnlyStore:
    return ReadOnlyStore.open(path)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 10**9 // 10**6:03d}Z"


# ── info ─────────────────────────────────────────────────────────────────────────────────────

_MDB_MAGIC = 0xBEEFC0DE


def file_map_size(data_mdb: str, psize: int) -> int | None:
    """The map size recorded in the file by its last writer (the newer of the two LMDB meta
    pages): the engine's `[store] map_size`, or more if the store grew.  Not the map of this
    read-only reader, which is as large as it likes.  None if the meta pages are unreadable."""
    # MDB_meta after the page header: magic u32, version u32, address (8), mapsize u64 at +16,
    # two 48-byte MDB_db records, last_pg u64, txnid u64 at +128
    best = None
    try:
        with open(data_mdb, "rb") as f:
            for page in (0, 1):
                f.seek(page * psize)
                head = f.read(256)
                hdr = next((o for o in range(0, 64, 4) if len(head) >= o + 136 and
                            struct.unpack_from("<I", head, o)[0] == _MDB_MAGIC), None)
                if hdr is None:
                    continue
                mapsize, = struct.unpack_from("<Q", head, hdr + 16)
                txnid, = struct.unpack_from("<Q", head, hdr + 128)
                if best is None or txnid > best[0]:
                    best = (txnid, mapsize)
    except OSError:
        return None
    return best[1] if best else None


def _info(args) -> int:
    with _open(args.path) as store, store.read() as r:
        info = store.info()
        dbs = {}
        for name in r.databases():
            st = r.stat(name)
            pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            dbs[name] = {"entries": st["entries"], "pages": pages, "bytes": pages * st["psize"]}
        checkpoints = {}
        if "tasks" in dbs:
            for role in r.prefixes("tasks"):
                last = r.items("tasks", role.encode() + b"\x00", reverse=True)
                key, raw = next(last)
                cp = orjson.loads(raw)
                checkpoints[role] = {"seq": cp["seq"], "time_ns": cp["time_ns"],
                                     "tasks": sorted(cp["states"]), "bytes": len(raw)}
        discoveries = {}
        if "discoveries" in dbs:
            for role in r.prefixes("discoveries"):
                key, _ = next(r.items("discoveries", role.encode() + b"\x00", reverse=True))
                discoveries[role] = int.from_bytes(key[-8:], "big")
        schema = r.schema()
    lm = info["lmdb"]
    map_bytes = file_map_size(os.path.join(info["path"], "data.mdb"), info["psize"])
    doc = {"path": info["path"], "schema": schema, "file_bytes": info["file_bytes"],
           "used_bytes": (lm["last_pgno"] + 1) * info["psize"],
           "map_bytes": map_bytes or lm["map_size"],   # the file's (the last writer's) map
           "page_size": info["psize"], "last_txnid": lm["last_txnid"],
           "readers": lm["num_readers"], "max_readers": info["max_readers"], "databases": dbs,
           "last_checkpoint": checkpoints, "last_discovery_seq": discoveries}
    if args.json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    out = [f"store     {doc['path']}",
           f"schema    version {schema.get('schema_version')} ({schema.get('application')}), "
           f"created {_when(schema['created_ns']) if 'created_ns' in schema else '?'}",
           f"file      {_human(doc['file_bytes'])}, used {_human(doc['used_bytes'])}, map "
           f"{_human(doc['map_bytes'])} (the last writer's: [store] map_size, or more if it "
           f"grew), page {doc['page_size']} B, last txn {doc['last_txnid']}, "
           f"reader slots {doc['readers']}/{doc['max_readers']}",
           "", f"  {'database':<14}{'entries':>10}{'pages':>9}{'size':>12}"]
    for name, d in dbs.items():
        out.append(f"  {name:<14}{d['entries']:>10}{d['pages']:>9}{_human(d['bytes']):>12}")
    out += ["", "last checkpoint per role:" if checkpoints else "no checkpoints"]
    for role, cp in checkpoints.items():
        out.append(f"  {role:<22} seq {cp['seq']:<8} {_when(cp['time_ns'])}  "
                   f"{len(cp['tasks'])} tasks  {_human(cp['bytes'])}")
    if discoveries:
        out += ["", "discoveries per role (last seq):"]
        out += [f"  {role:<22} {seq}" for role, seq in discoveries.items()]
    print("\n".join(out))
    return 0


# ── ls / show ────────────────────────────────────────────────────────────────────────────────

def _prefix_bytes(db: str, prefix: str) -> bytes:
    """The longest byte prefix every key shown as starting with `prefix` must have."""
    if db in SEQ_DATABASES:
        role, slash, _ = prefix.partition("/")
        return role.encode() + (b"\x00" if slash else b"")
    if db == "events":
        return b""
    return prefix.encode()


def _ls(args) -> int:
    shown = 0
    with _open(args.path) as store, store.read() as r:
        if args.db not in r.databases():
            print(f"(no {args.db} database yet)")
            return 0
        for key, raw in r.items(args.db, _prefix_bytes(args.db, args.prefix)):
            text = key_text(args.db, key)
            if not text.startswith(args.prefix):
                continue
            if args.db == "outcomes":
                preview = _outcome_preview(raw)
            else:
                preview = bytes(raw[:72]).decode(errors="replace") + ("…" if len(raw) > 72 else "")
            print(f"{text}\t{len(raw)}\t{preview}")
            shown += 1
            if args.limit and shown >= args.limit:
                break
    return 0


def _outcome_preview(raw) -> str:
    """An executor outcome (engine/chain/outcomes.py) on one line: its state, and the predicted
    and realised profit side by side (token units; gas in wei)."""
    try:
        r = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bytes(raw[:72]).decode(errors="replace")
    if not isinstance(r, dict):
        return str(r)[:72]
    predicted = r.get("predicted") if r.get("predicted") is not None else r.get("predicted_at_send")
    parts = [str(r.get("state")), str(r.get("chain") or "-"), f"predicted={predicted if predicted is not None else '-'}"]
    if r.get("simulated") is not None:
        parts.append(f"simulated={r['simulated']}")
    if r.get("realised") is not None:
        parts.append(f"realised={r['realised']}")
    if r.get("gas_cost_wei") is not None:
        parts.append(f"gas_wei={r['gas_cost_wei']}")
    parts.append(str(r.get("key")))
    if r.get("tx"):
        parts.append(str(r["tx"]))
    if r.get("reason"):
        parts.append(str(r["reason"])[:120])
    return " ".join(parts)


def _show(args) -> int:
    key = parse_key(args.db, args.key)
    with _open(args.path) as store, store.read() as r:
        raw = r.get(args.db, key) if args.db in r.databases() else None
        if raw is None:
            raise StoreError(f"{args.path}: no key {args.key!r} in {args.db}")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise StoreError(f"{args.path}: {args.db}/{args.key}: value is not JSON ({e})") from None
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# ── export ───────────────────────────────────────────────────────────────────────────────────

def _export(args) -> int:
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        with _open(args.path) as store, store.read() as r:
            wanted = args.db or list(DATABASES)
            writer = csv.writer(out) if args.format == "csv" else None
            if writer:
                writer.writerow(["db", "key", "value"])
            for db in wanted:
                if db not in r.databases():
                    continue
                for key, raw in r.items(db):
                    text = key_text(db, key)
                    try:
                        value = orjson.loads(raw)
                    except orjson.JSONDecodeError as e:
                        raise StoreError(f"{args.path}: {db}/{text}: value is not JSON ({e})") from None
                    if writer:
                        writer.writerow([db, text, orjson.dumps(value).decode()])
                    else:
                        out.write(orjson.dumps({"db": db, "key": text, "value": value}).decode())
                        out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# ── copy / verify ────────────────────────────────────────────────────────────────────────────

def _prepare_dest(dest: str) -> None:
    if os.path.exists(dest):
        if not os.path.isdir(dest):
            raise StoreError(f"{dest}: exists and is not a directory")
        if os.listdir(dest):
            raise StoreError(f"{dest}: not empty; copy needs a new or empty directory")
    else:
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            raise StoreError(f"{dest}: parent directory {parent} does not exist")
        os.mkdir(dest)


def _copy(args) -> int:
    with _open(args.path) as store:
        _prepare_dest(args.dest)
        store.copy(args.dest, compact=args.compact)
    size = os.path.getsize(os.path.join(args.dest, "data.mdb"))
    with _open(args.dest) as check:  # the copy must open as a store of the same schema
        version = check.schema_version
    print(f"copied {args.path} -> {args.dest} ({_human(size)}, schema {version}"
          f"{', compacted' if args.compact else ''})")
    return 0


def _verify(args) -> int:
    from lmdb.verify import VerifyError, verify

    with _open(args.path):   # rejects what is not a store before copying anything
        pass
    tmp = tempfile.mkdtemp(prefix="syndicate-verify-", dir=args.tmp)
    try:
        with _open(args.path) as store:
            store.copy(tmp)   # raw pages: consistent beside a live writer
        try:
            problems = verify(tmp)
        except VerifyError as e:
            raise StoreError(f"{args.path}: cannot verify: {e}") from None
        counts, bad = {}, []
        if not problems:
            with _open(tmp) as copy, copy.read() as r:
                for db in r.databases():
                    n = 0
                    for key, raw in r.items(db):
                        n += 1
                        try:
                            orjson.loads(raw)
                        except orjson.JSONDecodeError as e:
                            bad.append(f"{db}/{key_text(db, key)}: value is not JSON ({e})")
                        if db in SEQ_DATABASES and (len(key) < 10 or key[-9] != 0):
                            bad.append(f"{db}/{key_text(db, key)}: key is not prefix NUL u64")
                    counts[db] = n
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    problems = list(problems) + bad
    if problems:
        for p in problems[:50]:
            print(f"problem: {p}")
        if len(problems) > 50:
            print(f"… and {len(problems) - 50} more")
        print(f"{args.path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    total = sum(counts.values())
    print(f"ok: {args.path}: every page sound, {total} values decoded "
          f"({', '.join(f'{db} {n}' for db, n in counts.items())})")
    return 0


_COMMANDS = {"info": _info, "ls": _ls, "show": _show, "export": _export, "copy": _copy,
             "verify": _verify}
