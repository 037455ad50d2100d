"""`python -m sandbox start|status|stop` manages exactly its own processes."""

from __future__ import annotations

import os
import subprocess
import sys

from sandbox.state import SandboxState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sandbox(*args):
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180)


def test_start_status_stop_end_exactly_the_recorded_processes(tmp_path):
    state_dir = str(tmp_path / "sbx")
    started = _sandbox("start", "--state-dir", state_dir)
    assert started.returncode == 0, started.stderr
    state = SandboxState.load(state_dir)
    refs = [ref for _, ref in state.processes()]
    assert len(refs) == 3 and all(ref.is_alive() for ref in refs)

    status = _sandbox("status", "--state-dir", state_dir)
    assert status.returncode == 0
    for name in ("kafka", "source", "target"):
        assert "%s " % name in status.stdout and "running" in status.stdout

    stopped = _sandbox("stop", "--state-dir", state_dir)
    assert stopped.returncode == 0
    assert "kafka" in stopped.stdout
    assert not any(ref.is_alive() for ref in refs)
    assert _sandbox("status", "--state-dir", state_dir).returncode == 1


def test_second_start_reuses_the_running_sandbox(sandbox):
    before = [ref.pid for _, ref in sandbox.processes()]
    again = _sandbox("start", "--state-dir", sandbox.state_dir)
    assert again.returncode == 0, again.stderr
    after = [ref.pid for _, ref in SandboxState.load(sandbox.state_dir).processes()]
    assert after == before
