"""playbooks/setup-replication.yml on the sandbox pair: check mode, a real run, a re-run, bad variables."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest
from playbook import REPO, run_playbook

PLAYBOOK = os.path.join(REPO, "playbooks", "setup-replication.yml")
DERIVED = os.path.join(REPO, "playbooks", "vars", "derived.yml")


def _connection(endpoint):
    return {"endpoint_url": endpoint.url, "iam_endpoint_url": endpoint.url, "region": endpoint.region,
            "access_key": "testing", "secret_key": "testing"}


@pytest.fixture
def setup_vars(sandbox):
    """Variables of one fresh aws_s3 pair (unique names: the sandbox is shared by the session)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "crr_source": _connection(sandbox.source),
        "crr_target": _connection(sandbox.target),
        "crr_sites": [{"name": "moto-target", "type": "aws_s3", "aws_endpoint": "s3.example.com",
                       "bucket": "tgt-" + suffix, "credentials_profile": "target"}],
        "crr_pairs": [{"source_bucket": "src-" + suffix, "target_bucket": "tgt-" + suffix, "site": "moto-target"}],
    }


def _state(sandbox, setup_vars):
    """What exists of the pair: buckets on each side, the role on the source."""
    pair = setup_vars["crr_pairs"][0]
    found = {}
    for side, bucket in (("source", pair["source_bucket"]), ("target", pair["target_bucket"])):
        endpoint = sandbox.endpoints[side]
        s3 = boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        found[side] = bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    iam = boto3.client("iam", endpoint_url=sandbox.source.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    found["role"] = "backbeat-crr-" + pair["source_bucket"] in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    return found


def test_check_mode_on_a_fresh_site_runs_through_and_changes_nothing(sandbox, setup_vars):
    run = run_playbook(PLAYBOOK, setup_vars, check=True)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Source bucket with versioning Enabled and its replication configuration" in run.changed_tasks
    assert _state(sandbox, setup_vars) == {"source": False, "target": False, "role": False}


def test_setup_validates_and_a_second_run_changes_nothing(sandbox, setup_vars):
    first = run_playbook(PLAYBOOK, setup_vars)
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _state(sandbox, setup_vars) == {"source": True, "target": True, "role": True}
    rule = first.result("An Enabled rule replicates to the site")
    assert not rule.get("failed")

    second = run_playbook(PLAYBOOK, setup_vars)
    assert second.rc == 0, second.stdout[-3000:]
    assert second.changed_tasks == []


def test_a_pair_naming_an_undeclared_site_fails_before_any_change(sandbox, setup_vars):
    setup_vars["crr_pairs"][0]["site"] = "nowhere"
    run = run_playbook(PLAYBOOK, setup_vars)
    assert run.rc != 0
    failed = run.result("Every pair names its buckets and a declared site")
    assert "crr_pairs" in failed["msg"] and "declared: ['moto-target']" in failed["msg"]
    assert _state(sandbox, setup_vars) == {"source": False, "target": False, "role": False}


def test_a_pair_can_name_its_role(sandbox, setup_vars):
    role_name = "custom-" + setup_vars["crr_pairs"][0]["source_bucket"]
    setup_vars["crr_pairs"][0]["role_name"] = role_name
    run = run_playbook(PLAYBOOK, setup_vars)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.result("Replication role on the source")["results"][0]["role_name"] == role_name
    configured = run.result("Source bucket with versioning Enabled and its replication configuration")
    assert configured["results"][0]["replication_configuration"]["role"].endswith(":role/" + role_name)


def _with_worker_config(playbook):
    """The playbook, then the worker's config as the worker play builds it (the test inventory has no backbeat host)."""
    return [{"import_playbook": playbook},
            {"name": "Worker config", "hosts": "localhost", "gather_facts": False, "vars_files": [DERIVED],
             "tasks": [{"name": "Rendered worker config", "ansible.builtin.debug": {"var": "crr_worker_base_config"}}]}]


def _worker_source(run):
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.result("Rendered worker config")["crr_worker_base_config"]["extensions"]["replication"]["source"]


def test_notification_queue_url_reaches_the_worker_config_and_a_rerun_changes_nothing(sandbox, setup_vars):
    queue = "crr-" + setup_vars["crr_pairs"][0]["source_bucket"]
    setup_vars["crr_notification_queue"] = queue
    sqs = boto3.client("sqs", endpoint_url=sandbox.source.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")

    check = run_playbook(_with_worker_config(PLAYBOOK), setup_vars, check=True)
    assert "notificationQueueUrl" not in _worker_source(check)  # no queue yet: scan only
    assert queue not in "".join(sqs.list_queues().get("QueueUrls", []))

    first = _worker_source(run_playbook(_with_worker_config(PLAYBOOK), setup_vars))
    assert first["notificationQueueUrl"] == sqs.get_queue_url(QueueName=queue)["QueueUrl"]

    second = run_playbook(_with_worker_config(PLAYBOOK), setup_vars)
    assert _worker_source(second)["notificationQueueUrl"] == first["notificationQueueUrl"]
    assert second.changed_tasks == []


def _with_backbeat_host(playbook):
    """A backbeat host (local connection) added before the playbook, as an inventory with the worker would have."""
    return [{"name": "Inventory with a backbeat host", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "Add a backbeat host", "ansible.builtin.add_host":
                        {"name": "worker1", "groups": "backbeat", "ansible_connection": "local"},
                        "changed_when": False}]},
            {"import_playbook": playbook}]


def test_undefined_vault_variables_fail_in_one_message_before_any_change(sandbox, setup_vars):
    setup_vars["crr_source"]["secret_key"] = "{{ vault_source_secret_key }}"
    setup_vars["worker_credentials"] = {
        "source": {"access_key_id": "{{ vault_source_access_key }}", "secret_access_key": "s"},
        "target": {"access_key_id": "t", "secret_access_key": "{{ vault_target_secret_key }}"}}
    run = run_playbook(_with_backbeat_host(PLAYBOOK), setup_vars)
    assert run.rc != 0
    message = run.result("Every variable the run reads is defined")["msg"]
    for variable, used_in in (("vault_source_secret_key", "crr_source.secret_key"),
                              ("vault_source_access_key", "worker_credentials.source.access_key_id"),
                              ("vault_target_secret_key", "worker_credentials.target.secret_access_key")):
        assert "%s (in %s on localhost, worker1)" % (variable, used_in) in message
    assert "vault file" in message and "Nothing was changed" in message
    assert run.changed_tasks == []
    assert _state(sandbox, setup_vars) == {"source": False, "target": False, "role": False}


def test_a_profile_the_worker_uses_missing_from_its_credentials_fails_before_any_change(sandbox, setup_vars):
    setup_vars["worker_credentials"] = {"source": {"access_key_id": "key-of-source",
                                                       "secret_access_key": "secret-of-source"}}
    run = run_playbook(_with_backbeat_host(PLAYBOOK), setup_vars)
    assert run.rc != 0
    failed = run.result("Each backbeat host has the keys of every profile the worker uses")
    message = failed["results"][0]["msg"]
    assert "backbeat host worker1" in message and 'profiles ["target"]' in message and "crr_sites" in message
    assert "of-source" not in run.stdout  # the keys themselves are never shown
    assert _state(sandbox, setup_vars) == {"source": False, "target": False, "role": False}
