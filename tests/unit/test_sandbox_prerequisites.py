"""A missing Java or Maven is a message with the fix, not a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandbox import kafka
from sandbox.processes import SandboxError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_missing_java_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(kafka.shutil, "which", lambda cmd: None)
    with pytest.raises(SandboxError, match=r"'java' not found.*apt-get install -y openjdk-17-jre-headless"):
        kafka._require_java()


def test_missing_maven_on_cold_cache_names_the_package_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(kafka.shutil, "which", lambda cmd: None)
    with pytest.raises(SandboxError, match=r"'mvn' not found.*apt-get install -y maven"):
        kafka.resolve_jars()


def test_warm_cache_needs_no_maven(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libs = tmp_path / "backbeat-crr" / ("kafka-%s" % kafka.kafka_version()) / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").touch()
    monkeypatch.setattr(kafka.shutil, "which", lambda cmd: None)
    assert kafka.resolve_jars() == str(libs)


def test_cli_prints_the_fix_and_exits_2_without_java(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no java, no mvn on PATH
    proc = subprocess.run([sys.executable, "-m", "sandbox", "start", "--state-dir", str(tmp_path / "s")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "apt-get install" in proc.stderr
    assert "Traceback" not in proc.stderr
