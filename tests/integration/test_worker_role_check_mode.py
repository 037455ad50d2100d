"""The worker role in a first --check on a fresh host: it runs through, quietly."""

from __future__ import annotations

import grp
import os
import pwd

from playbook import run_playbook


def _role_play(tmp_path):
    """The role on localhost, under tmp_path, without systemd, from a wheelhouse (nothing to build in check mode)."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "crr_worker-0.1.0-py3-none-any.whl").write_bytes(b"")  # check mode installs nothing
    return [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "backbeat.crr.worker", "vars": {
        "worker_service_manager": "none",
        "worker_create_user": False,
        "worker_user": pwd.getpwuid(os.getuid()).pw_name,
        "worker_group": grp.getgrgid(os.getgid()).gr_name,
        "worker_install_dir": str(tmp_path / "opt"),
        "worker_config_dir": str(tmp_path / "etc"),
        "worker_state_dir": str(tmp_path / "var"),
        "worker_wheelhouse": str(wheelhouse),
        "worker_python": "/usr/bin/python3",
        "worker_config": {"kafka": {"hosts": "127.0.0.1:9092"}},
    }}]}]


def test_a_first_check_run_prints_no_warning_about_the_missing_host_wheelhouse(tmp_path):
    run = run_playbook(_role_play(tmp_path), check=True, json_output=False)
    output = run.stdout + run.stderr
    assert run.rc == 0, output[-3000:]
    assert "TASK [backbeat.crr.worker : Find wheels left from earlier installs]" in output
    assert "wheelhouse" not in "".join(line for line in output.splitlines() if "[WARNING]" in line), output[-3000:]
    assert not (tmp_path / "opt").exists()
