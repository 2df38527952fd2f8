"""Stores across fork(): every open Store is made safe to fork before any fork of its process.

LMDB forbids using an environment across fork(), and py-lmdb refuses to open, in a child, an
environment its parent had open, until the inherited handle is closed.  Closing it aborts the
transactions the child inherited, which frees the *parent's* reader slots: the
`max_spare_txns` trap (py-lmdb's C extension keeps one spare read transaction, holding a slot,
whatever max_spare_txns says).  So, before any fork (os.register_at_fork), a Store waits until
no transaction of its process is open and drops the spare (set_mapsize(0) aborts it); the
parent then carries on untouched, and the child closes its inherited copy, which owns no slot
and no transaction, and can open its own Store.  The supervisor can keep its Store open while
it forks roles.

This module keeps the set of open stores and installs the three hooks once; what each store
does at each moment is its own `_before_fork`, `_after_fork_parent`, `_after_fork_child`.
"""
from __future__ import annotations

import os
import weakref

_OPEN_STORES: "weakref.WeakSet" = weakref.WeakSet()


def track(store) -> None:
    """From now on, store's fork hooks run around every fork of this process."""
    _OPEN_STORES.add(store)


def untrack(store) -> None:
    _OPEN_STORES.discard(store)


def _before_fork() -> None:
    for store in list(_OPEN_STORES):
        store._before_fork()


def _after_fork_parent() -> None:
    for store in list(_OPEN_STORES):
        store._after_fork_parent()


def _after_fork_child() -> None:
    for store in list(_OPEN_STORES):
        store._after_fork_child()
    _OPEN_STORES.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                    after_in_child=_after_fork_child)
