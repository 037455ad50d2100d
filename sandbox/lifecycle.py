"""Start, report and stop a whole sandbox: Kafka + moto 'source' + moto 'target'."""

from __future__ import annotations

import json
import os

from sandbox import kafka, moto_server
from sandbox.processes import SandboxError, spawn
from sandbox.processes import stop as stop_process
from sandbox.state import SandboxState

DEFAULT_STATE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".sandbox")


def start(state_dir: str = DEFAULT_STATE_DIR) -> SandboxState:
    """Start every service not already running; returns the state, also saved in state_dir."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    state = SandboxState.load(state_dir) or SandboxState(state_dir=state_dir)
    if _running(state):
        return state
    stop(state_dir)  # a half-dead sandbox is restarted whole, from empty state
    state = SandboxState(state_dir=state_dir)
    try:
        for name in ("source", "target"):
            state.endpoints[name] = moto_server.start(state_dir, name)
            state.save()
        state.kafka = kafka.start(state_dir)
        state.save()
        kafka.wait_ready(state.kafka_bootstrap)
    except BaseException:
        stop(state_dir)
        raise
    return state


def status(state_dir: str = DEFAULT_STATE_DIR) -> dict[str, str]:
    """Component name -> 'running <address> pid N' or 'not running'."""
    state = SandboxState.load(state_dir)
    if state is None:
        return {}
    report = {}
    if state.kafka:
        report["kafka"] = _describe(state.kafka.process, state.kafka.bootstrap)
    for name, endpoint in state.endpoints.items():
        report[name] = _describe(endpoint.process, "%s account %s" % (endpoint.url, endpoint.account_id))
    for name, process in state.workers.items():
        report[name] = _describe(process, "crr-worker")
    return report


def stop(state_dir: str = DEFAULT_STATE_DIR) -> list[str]:
    """Stop exactly the processes recorded in state_dir; returns the names stopped."""
    state = SandboxState.load(state_dir)
    if state is None:
        return []
    stopped = []
    for name, process in state.processes():
        if process.is_alive():
            stop_process(process)
            stopped.append(name)
    os.remove(os.path.join(state_dir, "state.json"))
    return stopped


def run_workers(commands_file: str, state_dir: str = DEFAULT_STATE_DIR) -> list[str]:
    """(Re)start the worker components listed in commands_file as sandbox processes; returns their names.

    The file is what examples/sandbox/demo.yml writes: {"environment": {...}, "commands": {name: argv}}.
    """
    state = SandboxState.load(state_dir)
    if state is None or not _running(state):
        raise SandboxError("no running sandbox in %s (run: python -m sandbox start)" % state_dir)
    with open(commands_file) as src:
        spec = json.load(src)
    for process in state.workers.values():
        stop_process(process)
    state.workers = {}
    for name, argv in sorted(spec["commands"].items()):
        log = os.path.join(state_dir, "worker-%s.log" % name.replace("@", "-"))
        state.workers[name] = spawn(argv, log, env=spec.get("environment"))
        state.save()
    return sorted(state.workers)


def _running(state: SandboxState) -> bool:
    services = state.services()
    return len(services) == 3 and all(p.is_alive() for _, p in services)


def _describe(process, address: str) -> str:
    if process.is_alive():
        return "running %s pid %d" % (address, process.pid)
    return "not running (pid %d gone)" % process.pid


__all__ = ["start", "status", "stop", "run_workers", "SandboxError", "DEFAULT_STATE_DIR"]
