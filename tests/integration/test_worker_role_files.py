"""The worker role's files on a host: the API token in its own 0600 file named by the config, and the alert rules
installed where Prometheus reads them. The role's config tasks run for real on localhost, under tmp_path."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat

from playbook import run_playbook

TOKEN = "s3cret-api-token-value"


def _config_play(tmp_path, **role_vars):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Write the worker's config files",
        "ansible.builtin.include_role": {"name": "backbeat.crr.worker", "tasks_from": "config"},
        "vars": dict({
            "worker_user": pwd.getpwuid(os.getuid()).pw_name,
            "worker_group": grp.getgrgid(os.getgid()).gr_name,
            "worker_config_dir": str(tmp_path / "etc"),
            "worker_service_manager": "none",
            "_worker_components": [],  # what the restart handler loops over: the role's main tasks set it
            "worker_config": {"kafka": {"hosts": "127.0.0.1:9092"}, "api": {"port": 8901}},
        }, **role_vars),
    }]}]


def test_the_api_token_goes_to_a_0600_file_that_the_config_names_and_never_into_the_output(tmp_path):
    (tmp_path / "etc").mkdir()
    run = run_playbook(_config_play(tmp_path, worker_api_token=TOKEN), verbosity=2, json_output=False)
    assert run.rc == 0, (run.stdout + run.stderr)[-3000:]
    token_file = tmp_path / "etc" / "api-token"
    assert token_file.read_text().strip() == TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    config = json.loads((tmp_path / "etc" / "config.json").read_text())
    assert config["api"] == {"port": 8901, "tokenFile": str(token_file)}
    assert config["stateDir"] == "/var/lib/crr-worker"  # the role's state directory: the ledger caches on disk
    assert TOKEN not in run.stdout + run.stderr

    again = run_playbook(_config_play(tmp_path, worker_api_token=""))
    assert again.rc == 0 and not token_file.exists()
    assert "tokenFile" not in json.loads((tmp_path / "etc" / "config.json").read_text())["api"]


def test_the_alert_rules_are_installed_only_where_asked(tmp_path):
    (tmp_path / "etc").mkdir()
    rules = tmp_path / "prometheus"
    rules.mkdir()
    assert run_playbook(_config_play(tmp_path)).rc == 0
    assert list(rules.iterdir()) == []
    run = run_playbook(_config_play(tmp_path, worker_prometheus_rules_dir=str(rules)))
    assert run.rc == 0
    shipped = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "worker", "files", "prometheus",
                           "crr-worker.rules.yml")
    assert (rules / "crr-worker.rules.yml").read_bytes() == open(shipped, "rb").read()
