"""Start, identify and stop the sandbox's background processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass


class SandboxError(Exception):
    """A problem the operator can fix; the message says how."""


@dataclass
class ProcessRef:
    """A started process, identified by PID and kernel start time so a reused PID is never killed."""

    pid: int
    start_time: int

    def is_alive(self) -> bool:
        return _start_time(self.pid) == self.start_time

    def to_dict(self) -> dict:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, data: dict) -> ProcessRef:
        return cls(pid=int(data["pid"]), start_time=int(data["start_time"]))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def spawn(argv: list[str], log_path: str, env: dict | None = None) -> ProcessRef:
    """Start argv in its own session (it outlives this process), output to log_path."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return ProcessRef(pid=proc.pid, start_time=_start_time(proc.pid))


def stop(ref: ProcessRef, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ref, SIGKILL it after timeout; no-op when already gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not ref.is_alive():
            return
        try:
            os.killpg(ref.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and ref.is_alive():
            _reap(ref.pid)
            time.sleep(0.1)


def wait_until(predicate, timeout: float, what: str, log_path: str | None = None, interval: float = 0.2):
    """predicate()'s first truthy value, polled; on timeout raise naming what and the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    where = " (see %s)" % log_path if log_path else ""
    raise SandboxError("%s not ready after %.0f s%s" % (what, timeout, where))


def _start_time(pid: int) -> int | None:
    try:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has ended
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
