"""The collection builds into a tarball that ansible-galaxy installs, and resolves by FQCN."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def _run(*argv, **kwargs):
    proc = subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], capture_output=True, text=True, timeout=300,
                          **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_build_and_install_into_a_temporary_path(tmp_path):
    with open(os.path.join(REPO, "galaxy.yml")) as meta:
        version = yaml.safe_load(meta)["version"]
    _run("ansible-galaxy", "collection", "build", REPO, "--output-path", str(tmp_path / "dist"))
    tarball = tmp_path / "dist" / ("backbeat-crr-%s.tar.gz" % version)
    assert tarball.exists()

    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert "meta/runtime.yml" in names
    assert "plugins/module_utils/connection.py" in names
    assert not any(n.startswith((".venv", ".sandbox", "sandbox/", ".git/")) for n in names)

    _run("ansible-galaxy", "collection", "install", str(tarball), "-p", str(tmp_path / "collections"))
    listed = _run("ansible-galaxy", "collection", "list", "backbeat.crr", "-p", str(tmp_path / "collections"),
                  env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections")})
    assert "backbeat.crr" in listed.stdout and version in listed.stdout


def test_installed_modules_resolve_by_fqcn(tmp_path):
    """Every module of the tree is known to ansible-doc by its FQCN once installed."""
    _run("ansible-galaxy", "collection", "build", REPO, "--output-path", str(tmp_path))
    tarball = glob.glob(str(tmp_path / "backbeat-crr-*.tar.gz"))[0]
    _run("ansible-galaxy", "collection", "install", tarball, "-p", str(tmp_path / "c"))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "c")}
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "plugins/modules/*.py")))
    listed = _run("ansible-doc", "-t", "module", "-l", "backbeat.crr", env=env).stdout
    for name in modules:
        assert "backbeat.crr.%s" % name in listed
        _run("ansible-doc", "backbeat.crr.%s" % name, env=env)


def _listed_tasks(env, playbook):
    """The plays and tasks ansible-playbook --list-tasks finds in playbook, without its 'playbook:' header."""
    listed = _run("ansible-playbook", "-i", "localhost,", "--list-tasks", playbook, env=env, cwd=REPO).stdout
    lines = [line for line in listed.splitlines() if line.strip() and not line.startswith("playbook:")]
    assert any("Every variable the run reads is defined" in line for line in lines), listed
    return lines


def test_the_installed_playbook_runs_by_its_collection_name(tmp_path):
    """backbeat.crr.setup_replication is the playbook the documented playbooks/setup-replication.yml runs."""
    _run("ansible-galaxy", "collection", "build", REPO, "--output-path", str(tmp_path))
    tarball = glob.glob(str(tmp_path / "backbeat-crr-*.tar.gz"))[0]
    _run("ansible-galaxy", "collection", "install", tarball, "-p", str(tmp_path / "c"))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "c")}
    _run("ansible-playbook", "-i", "localhost,", "--syntax-check", "backbeat.crr.setup_replication", env=env)
    by_name = _listed_tasks(env, "backbeat.crr.setup_replication")
    assert by_name == _listed_tasks(env, os.path.join(REPO, "playbooks", "setup-replication.yml"))
