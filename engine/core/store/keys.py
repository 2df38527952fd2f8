"""The store's names and keys: which databases exist, how a key is laid out, how a record is
encoded, and what is refused before anything reaches LMDB (a bad prefix, a value orjson cannot
encode, a field that looks like a secret).  No LMDB environment here, only bytes.

In the sequenced databases (SEQ_DATABASES) a key is `prefix NUL seq`, seq a big-endian u64
that starts at 1 and is assigned inside the write transaction from the last committed key
(`last_seq`).  In `events` a key is a big-endian u64 of time_ns.  Shown as text (`key_text`,
`parse_key`), a sequenced key is `prefix/seq`.
"""
from __future__ import annotations

import re

import orjson

SEQ_DATABASES = ("tasks", "discoveries", "opportunities", "outcomes", "models", "inbox")
DATABASES = ("meta",) + SEQ_DATABASES + ("events",)

SEP = b"\x00"
SEQ = 8                         # bytes of a big-endian u64
_SECRET_FIELD = re.compile(r"private.?key|secret|mnemonic|password|seed.?phrase", re.I)


class StoreError(Exception):
    """A store that cannot be used as asked; the message names the path and what is wrong."""


def prefix_bytes(prefix: str) -> bytes:
    if not isinstance(prefix, str) or not prefix or "\x00" in prefix or "/" in prefix:
        raise StoreError(f"bad key prefix {prefix!r}: a non-empty name without '/' or NUL")
    raw = prefix.encode()
    if len(raw) > 256:
        raise StoreError(f"bad key prefix {prefix[:40]!r}…: longer than 256 bytes")
    return raw + SEP


def seq_bytes(seq: int) -> bytes:
    return seq.to_bytes(SEQ, "big")


def seq_of(key: bytes) -> int:
    """The seq (or time_ns) at the end of a key."""
    return int.from_bytes(key[-SEQ:], "big")


def seq_key(prefix: str, seq: int) -> bytes:
    return prefix_bytes(prefix) + seq_bytes(seq)


def key_text(db: str, key: bytes) -> str:
    """A key as `syndicate snapshot` shows it: prefix/seq, an integer (events) or a name."""
    if db in SEQ_DATABASES and len(key) > SEQ and key[-SEQ - 1] == 0:
        return f"{key[:-SEQ - 1].decode(errors='replace')}/{seq_of(key)}"
    if db == "events" and len(key) == SEQ:
        return str(seq_of(key))
    text = key.decode(errors="replace")
    return text if text.isprintable() and "\ufffd" not in text else "0x" + key.hex()


def parse_key(db: str, text: str) -> bytes:
    """The inverse of key_text; `0x…` is taken as raw hex in any database."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise StoreError(f"bad key {text!r}: not hex") from None
    if db in SEQ_DATABASES:
        prefix, _, seq = text.rpartition("/")
        if not prefix or not seq.isdigit():
            raise StoreError(f"bad key {text!r} for {db}: expected PREFIX/SEQ, e.g. base-analyst/12")
        return seq_key(prefix, int(seq))
    if db == "events":
        if not text.isdigit():
            raise StoreError(f"bad key {text!r} for events: expected an integer time_ns")
        return seq_bytes(int(text))
    return text.encode()


def last_seq(cursor, prefix: bytes) -> int:
    """The highest committed seq under prefix (0 if none), by one seek."""
    if cursor.set_range(prefix + b"\xff" * SEQ):
        found = cursor.prev()
    else:
        found = cursor.last()
    if found:
        key = cursor.key()
        if key.startswith(prefix) and len(key) == len(prefix) + SEQ:
            return seq_of(key)
    return 0


def encode(what: str, value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise StoreError(f"{what}: not JSON-serialisable: {e}") from None


def refuse_secrets(what: str, record) -> None:
    if isinstance(record, dict):
        for k in record:
            if isinstance(k, str) and _SECRET_FIELD.search(k):
                raise StoreError(f"{what}: field {k!r} looks like a secret; secrets are never stored")
