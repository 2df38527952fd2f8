"""The `syndicate` command: one entry point, one module per sub-command.

    syndicate run       [-c engine.toml] [--duration S]  the supervisor (engine/run_cli.py)
    syndicate ctl       [--name N] ROLE|all ACTION       signals by pid     (engine/control_cli.py)
    syndicate status    [--name N] [--json] [--watch]    reads shared memory (engine/control_cli.py)
    syndicate snapshot  PATH info|ls|show|export|copy|verify   offline LMDB  (engine/snapshot.py)
    syndicate bench     ring|switch|store|decide [...]   benchmarks         (engine/bench/<name>.py)
    syndicate devnet    up|down|traffic [...]            local anvil chains (engine/devnet/)
    syndicate moralis   sync [--dry-run]                 Moralis Streams     (engine/moralis_cli.py)
    syndicate check     [-c engine.toml] [--json]        probe the endpoints (engine/check_cli.py)
    syndicate replay    FILE... [--speed max|1x|10x]     recorded logs, real engine (engine/replay/)
    syndicate report    SNAPSHOT -o report.html          offline report      (engine/report.py)

Sub-commands other than `run` are imported lazily, so `syndicate status` starts fast and a
broken optional module never stops the supervisor from starting.  Every sub-command module
exposes `main(argv: list[str]) -> int`; exit code 2 always means "bad input, nothing done".
Output cut short by its reader (`syndicate status | head -1`) ends the command quietly, exit 0,
whichever sub-command wrote it.
"""
from __future__ import annotations

import importlib
import os
import sys

# name -> (module, one-line help).  `bench` and `snapshot` parse their own arguments.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("engine.run_cli", "start the supervisor and every role in engine.toml"),
    "ctl": ("engine.control_cli", "signal a role (or all): pause, resume, checkpoint, restart"),
    "status": ("engine.control_cli", "show every role's state, read from shared memory"),
    "snapshot": ("engine.snapshot", "read an LMDB state directory offline"),
    "bench": ("engine.bench", "benchmarks: ring, switch, store, decide"),
    "devnet": ("engine.devnet.cli", "local three-chain anvil devnet with Uniswap pools"),
    "moralis": ("engine.moralis_cli", "sync the Moralis Streams that feed the webhook receiver"),
    "check": ("engine.check_cli", "validate engine.toml and probe every endpoint it names"),
    "replay": ("engine.replay.cli", "recorded logs through the real engine (paper mode)"),
    "report": ("engine.report", "an HTML report (and PNGs) from an LMDB snapshot"),
}


def usage() -> str:
    lines = ["usage: syndicate COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`syndicate COMMAND --help` describes each one."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _dispatch(list(sys.argv[1:] if argv is None else argv))
        finally:   # also after argparse's SystemExit; a pipe is block-buffered: EPIPE shows here
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader has gone (`| head`): what it wanted it got.  Point stdout at /dev/null so
        # the interpreter's own flush at exit finds nowhere to fail either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"syndicate: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    entry = getattr(module, f"main_{name}", None) or module.main
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
