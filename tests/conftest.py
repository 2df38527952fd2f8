"""Fixtures shared by every test area."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import pytest


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each session gets its own temporary directory, removed when it ends: nothing is left in
    /tmp (pytest's default keeps the last three sessions'), and concurrent sessions never
    prune each other's directories."""
    # SIGTERM (a CI timeout, a killed session) tears down like Ctrl-C: fixtures' finalizers
    # stop the engines and anvils and remove their shared memory.
    signal.signal(signal.SIGTERM, _terminate)
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="syndicate-pytest-")
        config._syndicate_basetemp = config.option.basetemp


def pytest_unconfigure(config):
    p = getattr(config, "_syndicate_basetemp", None)
    if p:
        shutil.rmtree(p, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real on-chain logs; a user's clone has none, so skip with a reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the project's shared data at {SHARED_DATA} (absent in a plain clone)")
    return SHARED_DATA


@pytest.fixture
def unique_name() -> str:
    """An engine/segment name no other test (or engine) uses."""
    return f"t{os.getpid()}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def engine_factory(tmp_path, unique_name):
    """engine_factory(roles=..., **sections) -> a real engine (not yet started), cleaned up
    after the test whatever happened."""
    from enginehelp import Engine
    made = []

    def make(roles=None, name=None, **sections):
        e = Engine(tmp_path, name or unique_name, roles, **sections)
        made.append(e)
        return e
    yield make
    for e in made:
        e.cleanup()
