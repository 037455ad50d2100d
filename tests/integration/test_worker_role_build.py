"""The worker role's wheel build on a controller without a package index: the role's build tasks run for real on
localhost with pip's index disabled and pointed at an address that answers nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from playbook import run_playbook

# The build backend that worker/pyproject.toml asks for (setuptools>=77), pinned for the test's controller venv.
SETUPTOOLS = "setuptools==80.9.0"
ROLE = "backbeat.crr.worker : "  # how the json callback names the role's tasks


def _venv(tmp_path_factory, name):
    venv = tmp_path_factory.mktemp(name) / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def controller_python(tmp_path_factory):
    """A controller Python with the worker's build backend, installed before the index is cut off."""
    python = _venv(tmp_path_factory, "controller")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SETUPTOOLS], check=True)
    return python


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A fresh venv's Python: no setuptools, or the old one ensurepip bundles, not the >=77 the worker needs."""
    return _venv(tmp_path_factory, "bare")


@pytest.fixture
def no_index(monkeypatch):
    """pip with no index to reach and no configured find-links: only the role's own arguments count."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # discard port: nothing answers


def _remove_scratch(run):
    """Remove the scratch wheelhouse the build tasks leave (the role's main tasks would)."""
    scratch = run.result(ROLE + "Create a scratch wheelhouse on the controller").get("path")
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def _build_play(**role_vars):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Build the worker wheels",
        "ansible.builtin.include_role": {"name": "backbeat.crr.worker", "tasks_from": "build"},
        "vars": dict({"worker_build_dependencies": False}, **role_vars),
    }]}]


def test_the_worker_wheel_is_built_without_an_index_with_the_controllers_setuptools(no_index, controller_python):
    run = run_playbook(_build_play(worker_controller_python=controller_python))
    try:
        assert run.rc == 0, (run.stdout + run.stderr)[-3000:]
        facts = run.result(ROLE + "Choose the wheels to install")["ansible_facts"]
        wheel = facts["_worker_wheel"]
        assert os.path.basename(wheel) == "crr_worker-0.1.0-py3-none-any.whl"
        assert facts["_worker_wheels"] == [wheel]
        with zipfile.ZipFile(wheel) as archive:
            assert "crr_worker/cli.py" in archive.namelist()
    finally:
        _remove_scratch(run)


def test_without_a_build_backend_or_an_index_the_failure_says_how_to_build_offline(no_index, bare_python):
    run = run_playbook(_build_play(worker_controller_python=bare_python))
    _remove_scratch(run)
    assert run.rc != 0
    message = run.result(ROLE + "Fail when the worker wheel cannot be built")["msg"]
    assert "worker_controller_python: %s" % bare_python in message
    assert "setuptools>=77" in message and "worker_build_pip_args" in message and "worker_wheelhouse" in message
