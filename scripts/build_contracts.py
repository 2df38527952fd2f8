"""Compile contracts/*.sol with the pinned solc-js and write contracts/build/<Name>.json.

    .venv/bin/python -m scripts.build_contracts            rebuild contracts/build/
    .venv/bin/python -m scripts.build_contracts --check    exit 1 if the committed build differs

solc-js is driven from Node (`require('solc').compile`, standard JSON, see build_contracts.js)
because `solcjs --standard-json` prints a line before its JSON.  Every deployable contract gets
one artifact: {contractName, sourceName, compiler, abi, bytecode, deployedBytecode}, written
with sorted keys so that a rebuild reproduces the committed files byte for byte.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
BUILD = CONTRACTS / "build"
NODE_SCRIPT = Path(__file__).resolve().parent / "build_contracts.js"


class CompileError(RuntimeError):
    """solc reported an error (the message is solc's)."""


def compile_sources(src_dir: Path = CONTRACTS) -> dict[str, dict]:
    """Compile every .sol in `src_dir`; return {contractName: artifact} for deployable ones."""
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise CompileError(f"solc-js is not installed: run `npm ci` in {ROOT}")
    proc = subprocess.run(["node", str(NODE_SCRIPT), str(src_dir)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CompileError(proc.stderr.strip() or f"node exited with {proc.returncode}")
    result = json.loads(proc.stdout)
    output = result["output"]
    problems = [e["formattedMessage"] for e in output.get("errors", [])]
    if any(e["severity"] == "error" for e in output.get("errors", [])):
        raise CompileError("\n".join(problems))
    for p in problems:  # warnings: show them, they are worth fixing
        print(p, file=sys.stderr)
    artifacts: dict[str, dict] = {}
    for source, contracts in sorted(output.get("contracts", {}).items()):
        for name, c in sorted(contracts.items()):
            code = c["evm"]["bytecode"]["object"]
            if not code:  # interfaces and abstract contracts
                continue
            if name in artifacts:
                raise CompileError(f"two contracts are named {name}")
            artifacts[name] = {
                "contractName": name,
                "sourceName": source,
                "compiler": {"solc": result["version"], "settings": result["settings"]},
                "abi": c["abi"],
                "bytecode": "0x" + code,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict) -> bytes:
    return (json.dumps(artifact, indent=1, sort_keys=True) + "\n").encode()


def build(out_dir: Path = BUILD, src_dir: Path = CONTRACTS) -> list[Path]:
    """Write one artifact per deployable contract into `out_dir` (stale ones are removed)."""
    artifacts = compile_sources(src_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.json"):
        if old.stem not in artifacts:
            old.unlink()
    written = []
    for name, art in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_bytes(render(art))
        written.append(path)
    return written


def differences(out_dir: Path = BUILD, src_dir: Path = CONTRACTS) -> list[str]:
    """Names of artifacts whose committed file differs from a fresh build (or is missing/extra)."""
    with tempfile.TemporaryDirectory(prefix="syn-build-") as tmp:
        fresh = {p.name: p.read_bytes() for p in build(Path(tmp), src_dir)}
    committed = {p.name: p.read_bytes() for p in out_dir.glob("*.json")}
    return sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv not in ([], ["--check"]):
        print("usage: python -m scripts.build_contracts [--check]", file=sys.stderr)
        return 2
    try:
        if argv == ["--check"]:
            diff = differences()
            if diff:
                print("contracts/build differs from a fresh build: " + ", ".join(diff))
                return 1
            print("contracts/build is up to date")
            return 0
        for path in build():
            print(path.relative_to(ROOT))
    except CompileError as exc:
        print(f"build_contracts: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
