"""README's first command works: `make demo` replicates an object on a fresh sandbox."""

from __future__ import annotations

import os
import subprocess

from sandbox import lifecycle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_replicates_an_object_and_is_idempotent(tmp_path):
    state_dir = str(tmp_path / "sandbox")
    env = {**os.environ, "CRR_SANDBOX_STATE_DIR": state_dir, "ANSIBLE_NOCOLOR": "1"}
    try:
        runs = [subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=600) for _ in range(2)]
    finally:
        lifecycle.stop(state_dir)
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "Replicated: the target holds a REPLICA" in run.stdout
        assert '"scal-replication-status": "REPLICA"' in run.stdout
        assert '"status": "COMPLETED"' in run.stdout
    recap = [line for line in runs[1].stdout.splitlines() if line.startswith("localhost ")]
    assert recap and "changed=0" in recap[-1], "second setup run changed something: %s" % recap
