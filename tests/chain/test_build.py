"""contracts/build is exactly what the pinned solc-js makes of contracts/*.sol."""
from __future__ import annotations

import json
import shutil

import pytest

from scripts.build_contracts import BUILD, CONTRACTS, build

needs_node = pytest.mark.skipif(shutil.which("node") is None or not (BUILD.parent.parent / "node_modules" / "solc").is_dir(),
                                reason="needs node and node_modules/solc (run `npm ci`)")


@needs_node
def test_rebuild_reproduces_committed_artifacts_byte_for_byte(tmp_path):
    fresh = {p.name: p.read_bytes() for p in build(tmp_path)}
    committed = {p.name: p.read_bytes() for p in BUILD.glob("*.json")}
    assert sorted(fresh) == sorted(committed)
    for name in fresh:
        assert fresh[name] == committed[name], f"{name} differs: run `python -m scripts.build_contracts`"


def test_artifacts_name_their_compiler_and_source():
    art = json.loads((BUILD / "FlashArbExecutor.json").read_text())
    assert art["compiler"]["solc"].startswith("0.8.37+")
    assert (CONTRACTS / art["sourceName"]).is_file()
    assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 1000
    names = {i.get("name") for i in art["abi"]}
    for fn in ("execute", "uniswapV2Call", "uniswapV3SwapCallback", "uniswapV3FlashCallback",
               "receiveFlashLoan", "executeOperation", "setAllowed", "Executed"):
        assert fn in names


@needs_node
def test_a_compile_error_is_reported(tmp_path):
    from scripts.build_contracts import CompileError
    (tmp_path / "Bad.sol").write_text("pragma solidity ^0.8.0; contract Bad { function f( }")
    with pytest.raises(CompileError, match="Bad.sol"):
        build(tmp_path / "out", tmp_path)
