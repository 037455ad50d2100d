"""playbooks/setup-replication.yml with a CloudServer source: sites declared and CloudServer restarted
before any replication rule is put, the worker's config reading CloudServer's record log, and the
CloudServer variables checked before anything changes.

The `cloudserver` host is this machine (local connection) with copies of CloudServer's config.json and
locationConfig.json; its "restart" is a command appending a timestamp to a marker file. The S3 side is
the sandbox's moto pair, so the rules really are put (moto does not need the site declared; the order is
proved by the recorded task order and the marker's timestamp, not by a refusal).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import uuid
from datetime import datetime, timezone

import boto3
import pytest
import yaml
from crr_worker.config import parse_config
from playbook import REPO, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = os.path.join(REPO, "playbooks", "setup-replication.yml")
DERIVED = os.path.join(REPO, "playbooks", "vars", "derived.yml")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "cloudserver")
SITE = "aws-replicas"

RESTART_TASK = "Restart CloudServer (crr_cloudserver_restart_command)"
WAIT_TASK = "Wait until CloudServer answers at crr_cloudserver_endpoint_url"
SITES_TASK = "Site in config.json (replicationEndpoints) and, for aws_s3 sites, locationConfig.json"
RULES_TASK = "Source bucket with versioning Enabled and its replication configuration"
RENDER_TASK = "Rendered worker config"


def _connection(endpoint):
    return {"endpoint_url": endpoint.url, "iam_endpoint_url": endpoint.url, "region": endpoint.region,
            "access_key": "testing", "secret_key": "testing"}


@pytest.fixture
def cloudserver(tmp_path):
    """Copies of CloudServer's two files (without our site yet) and the restart marker's path."""
    directory = tmp_path / "cloudserver"
    directory.mkdir()
    for name in ("config.json", "locationConfig.json"):
        shutil.copy(os.path.join(FIXTURES, name), directory / name)
    return {"config": str(directory / "config.json"), "locations": str(directory / "locationConfig.json"),
            "marker": str(tmp_path / "restarts")}


@pytest.fixture
def cs_vars(sandbox, cloudserver):
    """One fresh pair from a CloudServer source (the sandbox's moto plays its S3 API) to an aws_s3 site."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "crr_source": _connection(sandbox.source),
        "crr_target": _connection(sandbox.target),
        "crr_source_type": "cloudserver",
        "crr_record_log": {"host": "127.0.0.1"},
        "crr_sites": [{"name": SITE, "type": "aws_s3", "aws_endpoint": "s3.example.com",
                       "bucket": "tgt-" + suffix, "credentials_profile": "target"}],
        "crr_pairs": [{"source_bucket": "src-" + suffix, "target_bucket": "tgt-" + suffix, "site": SITE}],
        "crr_cloudserver_config": cloudserver["config"],
        "crr_location_config": cloudserver["locations"],
        "crr_config_backup": False,
    }


def _restart_command(marker):
    return "date +%%s.%%N >> %s" % shlex.quote(marker)


def _with_cloudserver_host(host_vars, render_worker_config=False):
    """The playbook run with a `cloudserver` host (this machine) whose host variables are host_vars."""
    add_host = {"name": "cloudserver-1", "groups": ["cloudserver"], "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable, **host_vars}
    plays = [{"name": "A cloudserver host", "hosts": "localhost", "gather_facts": False,
              "tasks": [{"name": "Add the cloudserver host", "ansible.builtin.add_host": add_host,
                         "changed_when": False}]},
             {"import_playbook": PLAYBOOK}]
    if render_worker_config:
        plays.append(_render_play())
    return plays


def _render_play():
    """The worker's config as the worker play builds it (the test inventory has no backbeat host)."""
    return {"name": "Worker config", "hosts": "localhost", "gather_facts": False, "vars_files": [DERIVED],
            "tasks": [{"name": RENDER_TASK, "ansible.builtin.debug": {"var": "crr_worker_base_config"}}]}


def _ok(run):
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-3000:]
    return run


def _names(run):
    return [task["task"]["name"] for task in run.tasks]


def _start(run, name):
    """When the task named `name` started (the json callback's UTC timestamp), as epoch seconds."""
    task = next(t for t in run.tasks if t["task"]["name"] == name)
    started = datetime.fromisoformat(task["task"]["duration"]["start"].rstrip("Z"))
    return started.replace(tzinfo=timezone.utc).timestamp()


def _lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return handle.read().splitlines()


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _sites(config_path):
    with open(config_path) as handle:
        return [entry["site"] for entry in json.load(handle)["replicationEndpoints"]]


def _nothing_created(sandbox, cs_vars):
    """Neither bucket nor the role of the pair exists."""
    pair = cs_vars["crr_pairs"][0]
    for side, bucket in (("source", pair["source_bucket"]), ("target", pair["target_bucket"])):
        endpoint = sandbox.endpoints[side]
        s3 = boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        if bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            return False
    iam = boto3.client("iam", endpoint_url=sandbox.source.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return "backbeat-crr-" + pair["source_bucket"] not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


def test_sites_are_declared_and_cloudserver_restarted_once_before_the_rule_and_a_rerun_restarts_nothing(
        sandbox, cs_vars, cloudserver):
    host = {"crr_cloudserver_restart_command": _restart_command(cloudserver["marker"])}
    assert SITE not in _sites(cloudserver["config"])

    first = _ok(run_playbook(_with_cloudserver_host(host), cs_vars))
    assert SITE in _sites(cloudserver["config"])
    restarts = _lines(cloudserver["marker"])
    assert len(restarts) == 1, restarts
    order = _names(first)
    assert order.index(SITES_TASK) < order.index(RESTART_TASK) < order.index(WAIT_TASK) < order.index(RULES_TASK)
    assert first.result(RESTART_TASK, "cloudserver-1")["changed"]
    answered = first.result(WAIT_TASK, "cloudserver-1")
    assert 200 <= answered["status"] < 500 and not answered.get("failed")
    # The restart had happened (the marker holds its line) when the rule was put.
    assert float(restarts[0]) < _start(first, RULES_TASK)
    rule = first.result(RULES_TASK)["results"][0]["replication_configuration"]["rules"][0]
    assert rule["storage_class"] == SITE

    second = _ok(run_playbook(_with_cloudserver_host(host), cs_vars))
    assert second.changed_tasks == []
    assert RESTART_TASK not in _names(second) and WAIT_TASK not in _names(second)
    assert len(_lines(cloudserver["marker"])) == 1

    # Sites already declared (and read): a run without any restart configured goes through, changing nothing.
    third = _ok(run_playbook(_with_cloudserver_host({}), cs_vars))
    assert third.changed_tasks == []
    assert len(_lines(cloudserver["marker"])) == 1


def test_a_cloudserver_that_does_not_answer_after_its_restart_stops_the_playbook_before_any_rule(
        sandbox, cs_vars, cloudserver):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d" % probe.getsockname()[1]
    host = {"crr_cloudserver_restart_command": _restart_command(cloudserver["marker"]),
            "crr_cloudserver_endpoint_url": closed, "crr_cloudserver_wait_timeout": 2}
    run = run_playbook(_with_cloudserver_host(host), cs_vars)
    assert run.rc != 0
    waited = run.result(WAIT_TASK, "cloudserver-1")
    assert waited["failed"] and waited["status"] == -1 and "attempts" in waited  # retried, then gave up
    assert len(_lines(cloudserver["marker"])) == 1
    assert RULES_TASK not in _names(run)
    assert _nothing_created(sandbox, cs_vars)


def test_check_mode_restarts_nothing_and_writes_nothing(sandbox, cs_vars, cloudserver):
    host = {"crr_cloudserver_restart_command": _restart_command(cloudserver["marker"])}
    before = _read(cloudserver["config"])
    run = _ok(run_playbook(_with_cloudserver_host(host), cs_vars, check=True))
    assert SITES_TASK in run.changed_tasks
    assert _read(cloudserver["config"]) == before
    assert _lines(cloudserver["marker"]) == []
    assert _nothing_created(sandbox, cs_vars)


def test_a_cloudserver_source_without_a_restart_stops_before_any_change_when_sites_would_change(
        sandbox, cs_vars, cloudserver):
    before = _read(cloudserver["config"]), _read(cloudserver["locations"])
    run = run_playbook(_with_cloudserver_host({}), cs_vars)
    assert run.rc != 0
    failed = run.result("A CloudServer source whose sites change is restarted by the playbook", "cloudserver-1")
    assert failed.get("failed")
    assert "crr_cloudserver_service" in failed["msg"] and "crr_cloudserver_restart_command" in failed["msg"]
    assert SITE in failed["msg"] and "Nothing was changed" in failed["msg"]
    assert (_read(cloudserver["config"]), _read(cloudserver["locations"])) == before
    assert _nothing_created(sandbox, cs_vars)


def test_an_s3_source_without_a_restart_says_cloudserver_must_be_restarted_by_hand(sandbox, cs_vars, cloudserver):
    cs_vars["crr_source_type"] = "s3"
    del cs_vars["crr_record_log"]
    run = _ok(run_playbook(_with_cloudserver_host({}), cs_vars))
    assert SITE in _sites(cloudserver["config"])
    warning = run.result("CloudServer must be restarted by hand (neither crr_cloudserver_service nor "
                         "crr_cloudserver_restart_command is set)", "cloudserver-1")
    assert "restart it by hand" in warning["msg"] and SITE in warning["msg"]
    for handler in (RESTART_TASK, WAIT_TASK):  # notified, nothing to run
        assert run.result(handler, "cloudserver-1").get("skipped")


@pytest.mark.parametrize("feed, expected", [
    ({"crr_record_log": {"host": "md1.example.com"}},
     {"logSource": "dmd", "dmd": {"host": "md1.example.com", "port": 9993, "logName": "s3-recordlog"}}),
    ({"crr_record_log": {"host": "md1.example.com", "port": 9990, "log_name": "other-log", "https": True,
                         "start_from": "end", "poll_interval_s": 0.5}},
     {"logSource": "dmd", "dmd": {"host": "md1.example.com", "port": 9990, "logName": "other-log", "https": True},
      "startFrom": "end", "pollIntervalS": 0.5}),
    ({"crr_bucketd": {"host": "bucketd.example.com", "raft_sessions": [1, 2]}},
     {"logSource": "bucketd", "bucketd": {"host": "bucketd.example.com", "port": 9000, "raftSessions": [1, 2]}}),
], ids=["dmd-defaults", "dmd-options", "bucketd"])
def test_the_worker_config_of_a_cloudserver_source_reads_its_record_log(sandbox, cs_vars, feed, expected):
    del cs_vars["crr_record_log"]
    cs_vars.update(feed)
    run = _ok(run_playbook([{"import_playbook": PLAYBOOK}, _render_play()], cs_vars, check=True))
    config = run.result(RENDER_TASK)["crr_worker_base_config"]
    assert config["queuePopulator"] == expected
    source = config["extensions"]["replication"]["source"]
    assert source == {"endpoint": cs_vars["crr_source"]["endpoint_url"], "region": "us-east-1",
                      "buckets": [cs_vars["crr_pairs"][0]["source_bucket"]], "credentials": {"profile": "source"}}


def test_the_worker_config_of_an_s3_source_still_scans(sandbox, cs_vars):
    del cs_vars["crr_source_type"], cs_vars["crr_record_log"]
    run = _ok(run_playbook([{"import_playbook": PLAYBOOK}, _render_play()], cs_vars, check=True))
    assert run.result(RENDER_TASK)["crr_worker_base_config"]["queuePopulator"] == {"logSource": "s3"}


CHECK_SOURCE = "The source type is s3 or cloudserver, with the feed a CloudServer source's worker reads"
CHECK_FEED = "The CloudServer feed names a host and valid options"
CHECK_HOST = "Each cloudserver host is restarted one way, and answers at an http(s) URL"


@pytest.mark.parametrize("change, task, words", [
    ({"crr_source_type": "scality"}, CHECK_SOURCE, ["crr_source_type", "cloudserver", "got scality"]),
    ({"crr_record_log": None}, CHECK_SOURCE, ["crr_record_log", "crr_bucketd", "exactly one"]),
    ({"crr_bucketd": {"host": "b", "raft_sessions": [1]}}, CHECK_SOURCE, ["exactly one"]),
    ({"crr_source_type": "s3"}, CHECK_SOURCE, ["crr_record_log", "crr_source_type: cloudserver"]),
    ({"crr_record_log": {"host": "md1", "logName": "s3-recordlog"}}, CHECK_FEED, ["crr_record_log", "log_name"]),
    ({"crr_record_log": {"port": 9993}}, CHECK_FEED, ["crr_record_log", "host"]),
    ({"crr_record_log": {"host": "md1", "port": 99999}}, CHECK_FEED, ["crr_record_log", "port (1-65535"]),
    ({"crr_record_log": {"host": "md1", "start_from": "latest"}}, CHECK_FEED, ["start_from (oldest or end)"]),
    ({"crr_record_log": None, "crr_bucketd": {"host": "b"}}, CHECK_FEED, ["crr_bucketd", "raft_sessions"]),
    ({"crr_notification_queue": "q"}, "A CloudServer source sends no S3 event notifications",
     ["crr_notification_queue", "record log"]),
    ({"host": {"crr_cloudserver_service": "cloudserver.service", "crr_cloudserver_restart_command": "true"}},
     CHECK_HOST, ["cloudserver-1", "not both"]),
    ({"host": {"crr_cloudserver_service": "cloudserver", "crr_cloudserver_endpoint_url": "node1:8000"}},
     CHECK_HOST, ["crr_cloudserver_endpoint_url", "node1:8000"]),
    ({"host": {"crr_cloudserver_restart_command": "true", "crr_cloudserver_wait_timeout": "soon"}},
     CHECK_HOST, ["crr_cloudserver_wait_timeout", "soon"]),
], ids=["unknown-type", "no-feed", "two-feeds", "feed-on-s3-source", "unknown-key", "no-host", "bad-port",
        "bad-start-from", "bucketd-without-sessions", "notification-queue", "two-restarts", "bad-wait-url",
        "bad-wait-timeout"])
def test_a_bad_cloudserver_variable_fails_before_any_change(sandbox, cs_vars, cloudserver, change, task, words):
    host = {"crr_cloudserver_restart_command": _restart_command(cloudserver["marker"])}
    host.update(change.pop("host", {}))
    cs_vars.update(change)
    before = _read(cloudserver["config"])
    run = run_playbook(_with_cloudserver_host(host), cs_vars)
    assert run.rc != 0
    failed = run.result(task)
    assert failed.get("failed") or any(r.get("failed") for r in failed.get("results", [])), failed
    message = failed.get("msg", "") + " ".join(r.get("msg", "") for r in failed.get("results", []))
    for word in words:
        assert word in message, message
    assert _read(cloudserver["config"]) == before
    assert _lines(cloudserver["marker"]) == []
    assert _nothing_created(sandbox, cs_vars)


def _example_vars(name):
    with open(os.path.join(REPO, "examples", name, "inventory.yml"), encoding="utf-8") as src:
        return yaml.safe_load(src)["all"]["vars"]


@pytest.mark.parametrize("example, log_source", [("scality-to-aws", "dmd"), ("scality-to-scality", "bucketd")])
def test_the_cloudserver_examples_give_the_worker_a_config_it_accepts(example, log_source):
    """The examples' variables, through vars/derived.yml, into the worker's own config parser."""
    keys = ("crr_source", "crr_source_type", "crr_record_log", "crr_bucketd", "crr_sites", "crr_pairs",
            "crr_kafka_hosts")
    given = {k: v for k, v in _example_vars(example).items() if k in keys}
    run = _ok(run_playbook([_render_play()], given))
    written = run.result(RENDER_TASK)["crr_worker_base_config"]
    assert written["queuePopulator"]["logSource"] == log_source
    config = parse_config(written)
    assert config.cloudserver_source and config.log_source == log_source
    feed = given["crr_record_log"] if log_source == "dmd" else given["crr_bucketd"]
    assert (config.record_log.host, config.record_log.port) == (feed["host"], feed["port"])
    assert config.source.buckets == tuple(p["source_bucket"] for p in given["crr_pairs"])
