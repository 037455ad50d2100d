"""Session fixtures shared by every test: the sandbox, started by the project's own code."""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # the sandbox package lives at the repo root, beside the collection

from sandbox import lifecycle  # noqa: E402
from sandbox.state import SandboxState  # noqa: E402


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A running sandbox (Kafka + moto source + moto target).

    CRR_SANDBOX_STATE_DIR reuses one already started with `python -m sandbox start`
    (faster local iterations); otherwise a private one is started and stopped.
    """
    shared = os.environ.get("CRR_SANDBOX_STATE_DIR")
    if shared:
        state = SandboxState.load(shared)
        if state is None:
            pytest.fail("CRR_SANDBOX_STATE_DIR=%s holds no running sandbox" % shared)
        yield state
        return
    state_dir = str(tmp_path_factory.mktemp("sandbox"))
    state = lifecycle.start(state_dir)
    try:
        yield state
    finally:
        lifecycle.stop(state_dir)
