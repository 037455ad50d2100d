"""execution-environment.yml names files that exist, and ansible-builder turns it into a build context."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def _definition():
    with open(os.path.join(REPO, "execution-environment.yml")) as handle:
        return yaml.safe_load(handle)


def test_the_definition_names_requirement_files_of_the_repository():
    definition = _definition()
    assert definition["version"] == 3
    dependencies = definition["dependencies"]
    assert dependencies["python"] == "meta/ee-requirements.txt" and dependencies["system"] == "bindep.txt"
    for name in ("python", "system"):
        assert os.path.isfile(os.path.join(REPO, dependencies[name])), dependencies[name]
    with open(os.path.join(REPO, dependencies["python"])) as handle:
        packages = [line.split(">")[0].strip() for line in handle if line.strip() and not line.startswith("#")]
    assert "boto3" in packages  # what the modules import


def test_ansible_builder_creates_the_build_context(tmp_path):
    for name in ("execution-environment.yml", "bindep.txt"):
        shutil.copy(os.path.join(REPO, name), tmp_path / name)
    (tmp_path / "meta").mkdir()
    shutil.copy(os.path.join(REPO, "meta", "ee-requirements.txt"), tmp_path / "meta" / "ee-requirements.txt")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO, "--output-path",
                    str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    proc = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "--file", "execution-environment.yml",
                           "--context", "context", "--output-filename", "Containerfile"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "ansible-galaxy collection install /tmp/backbeat-crr/" in containerfile
    assert list((tmp_path / "context" / "_build" / "collection").glob("backbeat-crr-*.tar.gz"))
    assert "boto3>=" in (tmp_path / "context" / "_build" / "requirements.txt").read_text()
    assert (tmp_path / "context" / "_build" / "bindep.txt").exists()
