"""python -m sandbox start|status|check|run-worker FILE|stop|env [--state-dir DIR]"""

from __future__ import annotations

import argparse
import sys
import time

from sandbox import lifecycle
from sandbox.processes import SandboxError
from sandbox.state import SandboxState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--state-dir", default=lifecycle.DEFAULT_STATE_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        commands.add_parser(name).add_argument("--state-dir", default=argparse.SUPPRESS)
    run_worker = commands.add_parser("run-worker", help="run the worker components of a commands file")
    run_worker.add_argument("commands_file", help="the worker commands file (examples/sandbox/demo.yml writes it)")
    run_worker.add_argument("--state-dir", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.command == "run-worker":
            print("running: %s" % ", ".join(lifecycle.run_workers(args.commands_file, args.state_dir)))
            return 0
        return COMMANDS[args.command](args.state_dir)
    except SandboxError as exc:
        print("sandbox: %s" % exc, file=sys.stderr)
        return 2


def _start(state_dir: str) -> int:
    began = time.monotonic()
    lifecycle.start(state_dir)
    print("sandbox ready in %.1f s (state: %s/state.json)" % (time.monotonic() - began, state_dir))
    return _status(state_dir)


def _status(state_dir: str) -> int:
    report = lifecycle.status(state_dir)
    if not report:
        print("sandbox: nothing started in %s" % state_dir)
        return 1
    for name, line in report.items():
        print("%-7s %s" % (name, line))
    return 0 if all(line.startswith("running") for line in report.values()) else 1


def _check(state_dir: str) -> int:
    from sandbox.check import check

    state = SandboxState.load(state_dir)
    if state is None:
        print("sandbox: nothing started in %s (run: python -m sandbox start)" % state_dir, file=sys.stderr)
        return 1
    for line in check(state):
        print(line)
    return 0


def _stop(state_dir: str) -> int:
    stopped = lifecycle.stop(state_dir)
    print("stopped: %s" % (", ".join(stopped) or "nothing was running"))
    return 0


def _env(state_dir: str) -> int:
    """Shell exports for the demo and manual use: eval "$(python -m sandbox env)"."""
    state = SandboxState.load(state_dir)
    if state is None:
        print("sandbox: nothing started in %s" % state_dir, file=sys.stderr)
        return 1
    print("export CRR_KAFKA_BOOTSTRAP=%s" % state.kafka_bootstrap)
    for name, endpoint in state.endpoints.items():
        print("export CRR_%s_URL=%s" % (name.upper(), endpoint.url))
        print("export CRR_%s_ACCOUNT_ID=%s" % (name.upper(), endpoint.account_id))
    return 0


COMMANDS = {"start": _start, "status": _status, "check": _check, "stop": _stop, "env": _env}

if __name__ == "__main__":
    sys.exit(main())
