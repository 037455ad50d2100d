"""The config is validated once; every invalid key is named in the error, and the CLI exits 2."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml
from crr_worker.config import ConfigError, load_config, parse_config, part_size_for

from tests.playbook import REPO, run_playbook

VALID = {
    "kafka": {"hosts": "127.0.0.1:9092"},
    "extensions": {"replication": {
        "source": {"endpoint": "http://127.0.0.1:8000", "buckets": ["src"]},
        "destination": {"bootstrapList": [
            {"site": "aws1", "type": "aws_s3", "endpoint": "http://127.0.0.1:9000"},
            {"site": "zenko", "servers": ["10.0.0.1:8000"]},
        ]},
    }},
}


def with_change(path: str, value):
    data = copy.deepcopy(VALID)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()
REPLICATION = "extensions.replication"
SITES = REPLICATION + ".destination.bootstrapList"

INVALID = [
    ("kafka", _DELETE, "kafka", "is required"),
    ("kafka.hosts", "localhost", "kafka.hosts", "host:port"),
    ("kafka.hosts", [], "kafka.hosts", "at least one"),
    ("kafka.partitions", 0, "kafka.partitions", "between 1 and 10000, got 0"),
    ("queuePopulator.logSource", "kinesis", "queuePopulator.logSource", "one of s3, dmd, bucketd"),
    ("queuePopulator.scanIntervalS", "often", "queuePopulator.scanIntervalS", "must be a number"),
    (REPLICATION + ".source", _DELETE, REPLICATION + ".source", "is required"),
    (REPLICATION + ".source.buckets", [], REPLICATION + ".source.buckets", "discovery"),
    (REPLICATION + ".source.buckets", [""], REPLICATION + ".source.buckets[0]", "bucket name"),
    (REPLICATION + ".source.endpoint", "s3.local", REPLICATION + ".source.endpoint", "http"),
    (REPLICATION + ".source.credentials", {"file": "/nonexistent"}, REPLICATION + ".source.credentials.file",
     "cannot read"),
    (REPLICATION + ".destination.bootstrapList", [], SITES, "at least one site"),
    (SITES + ".0.type", "gcs", SITES + "[0].type", "one of aws_s3, scality"),
    (SITES + ".0.site", _DELETE, SITES + "[0].site", "is required"),
    (SITES + ".0.site", "scan/aws1", SITES + "[0].site", "cannot contain '/'"),
    (SITES + ".1.site", "aws1", SITES + "[1].site", "duplicate"),
    (SITES + ".0.retry", {"maxRetries": 0}, SITES + "[0].retry.maxRetries", "between 1 and 1000"),
    (REPLICATION + ".queueProcessor", {"concurrency": "8"}, REPLICATION + ".queueProcessor.concurrency",
     "an integer"),
    (REPLICATION + ".queueProcessor", {"mpuPartSize": 1024}, REPLICATION + ".queueProcessor.mpuPartSize",
     "between 5242880"),
    (REPLICATION + ".queueProcessor", {"retry": {"backoff": {"min": 10, "max": 5}}},
     REPLICATION + ".queueProcessor.retry.backoff.max", ">= 10"),
    (REPLICATION + ".queueProcessor", {"retry": {"backoff": {"jitter": 2}}},
     REPLICATION + ".queueProcessor.retry.backoff.jitter", "between 0"),
    (REPLICATION + ".ledgerTopic", "backbeat-replication", REPLICATION + ".ledgerTopic", "must differ"),
    ("api", {"port": 70000}, "api.port", "between 1 and 65535"),
    ("api", {"host": True}, "api.host", "not a boolean"),
]


@pytest.mark.parametrize("path,value,key,message", INVALID, ids=[":".join(i[2:]) for i in INVALID])
def test_invalid_key_is_named_in_the_error(path, value, key, message):
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(path, value))
    assert error.value.key == key
    assert message in str(error.value)


def test_valid_config_gets_backbeat_defaults():
    config = parse_config(VALID)
    assert config.topic == "backbeat-replication"
    assert config.status_topic == "backbeat-replication-status"
    assert config.site("aws1").retry.max_retries == 5 and config.site("aws1").retry.timeout_s == 900
    assert config.site("zenko").type == "scality" and config.site("zenko").retry.timeout_s == 300
    assert config.queue_processor.mpu_threshold == 128 * 1024 * 1024
    assert config.api.host == "127.0.0.1"


def test_credentials_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "creds"
    path.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(REPLICATION + ".source.credentials", {"file": str(path)}))
    assert error.value.key == REPLICATION + ".source.credentials.file" and "0600" in str(error.value)


def _token_file(tmp_path, mode: int, text: str = "s3cret-token\n") -> str:
    path = tmp_path / "api-token"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_the_api_token_is_read_from_a_0600_token_file_and_kept_out_of_the_repr(tmp_path):
    path = _token_file(tmp_path, 0o600)
    config = parse_config(with_change("api", {"tokenFile": path}))
    assert config.api.token == "s3cret-token" and config.api.token_file == path
    assert "s3cret-token" not in repr(config)


def test_a_token_file_readable_by_group_or_others_is_refused_with_the_chmod_to_run(tmp_path):
    path = _token_file(tmp_path, 0o640)
    with pytest.raises(ConfigError) as error:
        parse_config(with_change("api", {"tokenFile": path}))
    assert error.value.key == "api.tokenFile" and "chmod 600 %s" % path in str(error.value)


@pytest.mark.parametrize("case,message", [("missing", "cannot read"), ("empty", "is empty")])
def test_a_missing_or_empty_token_file_is_refused(tmp_path, case, message):
    path = str(tmp_path / "nonexistent") if case == "missing" else _token_file(tmp_path, 0o600, " \n")
    with pytest.raises(ConfigError) as error:
        parse_config(with_change("api", {"tokenFile": path}))
    assert error.value.key == "api.tokenFile" and message in str(error.value)


def test_an_inline_api_token_is_refused_naming_token_file():
    with pytest.raises(ConfigError) as error:
        parse_config(with_change("api", {"token": "s3cret-token"}))
    assert error.value.key == "api.token" and "api.tokenFile" in str(error.value)
    assert "s3cret-token" not in str(error.value)


def test_part_size_grows_to_stay_within_ten_thousand_parts():
    assert part_size_for(100 * 1024 ** 3, 16 * 1024 ** 2) * 10_000 >= 100 * 1024 ** 3
    assert part_size_for(70 * 1024 ** 2, 16 * 1024 ** 2) == 16 * 1024 ** 2


def crr_worker(*args: str) -> subprocess.CompletedProcess:
    executable = os.path.join(os.path.dirname(sys.executable), "crr-worker")
    if not os.path.exists(executable):
        pytest.fail("crr-worker is not installed in the venv: run `.venv/bin/pip install -e ./worker`")
    return subprocess.run([executable, *args], capture_output=True, text=True, timeout=60)


def test_check_config_accepts_a_valid_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(with_change("extensions.replication.destination.bootstrapList", [
        VALID["extensions"]["replication"]["destination"]["bootstrapList"][0]])))
    result = crr_worker("check-config", str(path))
    assert result.returncode == 0 and "s3 source, 1 site(s): aws1" in result.stdout


def test_check_config_refuses_a_site_no_processor_could_replicate_to(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(VALID))  # a scality site needs a CloudServer source
    result = crr_worker("check-config", str(path))
    assert result.returncode == 2
    assert "bootstrapList[1].type: site zenko is a scality site" in result.stderr and "logSource dmd" in result.stderr


def test_check_config_asks_a_scality_site_for_its_target_account(tmp_path):
    config = with_change("queuePopulator", {"logSource": "dmd", "dmd": {"host": "127.0.0.1"}})
    config["extensions"]["replication"]["source"]["credentials"] = {"profile": "replication"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = crr_worker("check-config", str(path))
    assert result.returncode == 2 and "bootstrapList[1].canonicalId" in result.stderr


@pytest.mark.parametrize("path,value,key,message", INVALID[:6], ids=[i[2] for i in INVALID[:6]])
def test_check_config_names_the_key_and_exits_2(tmp_path, path, value, key, message):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(with_change(path, value)))
    result = crr_worker("check-config", str(config))
    assert result.returncode == 2
    assert key in result.stderr and message in result.stderr


def test_check_config_of_unparsable_json_exits_2(tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{not json")
    result = crr_worker("check-config", str(config))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


# ------------------------------------------------------------------------------------------- unknown keys

TYPOS = [
    ("queuePopulater", {}, "queuePopulater", "'queuePopulator'"),
    ("kafka.partition", 4, "kafka.partition", "'partitions'"),
    ("queuePopulator.scanIntervalSecs", 60, "queuePopulator.scanIntervalSecs", "'scanIntervalS'"),
    (REPLICATION + ".topics", "t", REPLICATION + ".topics", "'topic'"),
    (REPLICATION + ".source.notificationQueueURL", "http://q", REPLICATION + ".source.notificationQueueURL",
     "'notificationQueueUrl'"),
    (SITES + ".0.bucketNmae", "b", SITES + "[0].bucketNmae", "'bucketName'"),
    (SITES + ".0.credentialProfile", "p", SITES + "[0].credentialProfile", "'credentialsProfile'"),
    (REPLICATION + ".queueProcessor", {"retry": {"backoff": {"factr": 2}}},
     REPLICATION + ".queueProcessor.retry.backoff.factr", "'factor'"),
    # next to Backbeat keys accepted at the same place, a misspelling of a key the worker reads is refused
    ("log", {"logLevel": "info", "dumpLevel": "error", "loglevel": "debug"}, "log.loglevel", "'logLevel'"),
    (REPLICATION + ".queueProcessor", {"retryTimeoutS": 300, "concurency": 4},
     REPLICATION + ".queueProcessor.concurency", "'concurrency'"),
]


@pytest.mark.parametrize("path,value,key,fix", TYPOS, ids=[t[2] for t in TYPOS])
def test_a_misspelt_key_is_refused_with_its_path_and_the_likely_key(path, value, key, fix):
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(path, value))
    assert error.value.key == key
    assert str(error.value) == "%s: unknown key; did you mean %s?" % (key, fix)


def test_an_unknown_key_unlike_any_lists_the_keys_read_there():
    with pytest.raises(ConfigError) as error:
        parse_config(with_change("api", {"bind": "0.0.0.0"}))
    assert str(error.value) == "api.bind: unknown key; valid keys: host, port, tokenFile"


def test_a_backbeat_key_is_accepted_only_at_its_own_place():
    parse_config(with_change("queuePopulator", {"cronRule": "*/5 * * * * *"}))
    with pytest.raises(ConfigError, match=r"^cronRule: unknown key"):
        parse_config(with_change("cronRule", "*/5 * * * * *"))


def test_a_misspelt_required_key_is_pointed_at():
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(REPLICATION + ".destination", {"bootstrapLst": []}))
    assert str(error.value) == "%s: is required (is 'bootstrapLst' a misspelling?)" % SITES


def test_a_site_with_both_credentials_forms_is_refused():
    with pytest.raises(ConfigError, match=r"bootstrapList\[0\]\.credentials: .*not both"):
        parse_config(with_change(SITES, [{"site": "aws1", "type": "aws_s3", "credentialsProfile": "p",
                                          "credentials": {"profile": "q"}}]))


def test_path_style_is_checked_though_not_used():
    with pytest.raises(ConfigError, match=r"bootstrapList\[0\]\.pathStyle: must be a boolean"):
        parse_config(with_change(SITES + ".0.pathStyle", "yes"))


# ------------------------------------------------------------------------------- what the collection writes


def test_harness_configs_parse(tmp_path):
    """The shapes tests/worker/harness.py make_pair writes, with the changes the worker tests make to them."""
    credentials = tmp_path / "credentials"
    credentials.write_text("[crr]\naws_access_key_id = a\naws_secret_access_key = b\n")
    os.chmod(credentials, 0o600)
    creds = {"file": str(credentials), "profile": "crr"}
    token = tmp_path / "api-token"
    token.write_text("secret\n")
    os.chmod(token, 0o600)
    config = {
        "kafka": {"hosts": "127.0.0.1:9092", "partitions": 4},
        "queuePopulator": {"logSource": "s3", "scanIntervalS": 600},
        "extensions": {"replication": {
            "source": {"endpoint": "http://127.0.0.1:5000", "region": "us-east-1", "buckets": ["src"],
                       "notificationQueueUrl": None, "credentials": creds},
            "destination": {"bootstrapList": [
                {"site": "aws1", "type": "aws_s3", "endpoint": "http://127.0.0.1:5001", "region": "us-east-1",
                 "credentials": creds, "bucket": "tgt", "retry": {"maxRetries": 3, "timeoutS": 30}},
            ]},
            "topic": "crr-t", "replicationStatusTopic": "crr-t-status", "ledgerTopic": "crr-t-ledger",
            "replicationStatusProcessor": {"groupId": "crr-t-status-group"},
            "queueProcessor": {"groupId": "crr-t-group", "concurrency": 8, "mpuThreshold": 5 * 1024 * 1024,
                               "mpuPartSize": 5 * 1024 * 1024, "partConcurrency": 2},
        }},
        "log": {"logLevel": "info"},
        "api": {"host": "127.0.0.1", "port": 8901, "tokenFile": str(token)},
    }
    assert parse_config(config).site("aws1").bucket == "tgt"
    config["extensions"]["replication"]["source"].update(buckets=[], discovery=True)
    assert parse_config(config).source.discovery


def test_the_documented_example_parses(tmp_path):
    """docs/worker.md's config example, its credentials files made real."""
    with open(os.path.join(REPO, "docs", "worker.md"), encoding="utf-8") as doc:
        example = json.loads(doc.read().split("```json\n", 1)[1].split("```", 1)[0])
    credentials = tmp_path / "credentials"
    credentials.write_text("")
    os.chmod(credentials, 0o600)
    replication = example["extensions"]["replication"]
    for holder in [replication["source"], *replication["destination"]["bootstrapList"]]:
        if "credentials" in holder:
            holder["credentials"]["file"] = str(credentials)
    assert [s.site for s in parse_config(example).sites] == ["awsbackend", "zenko"]


def _scenarios() -> dict:
    """The variables of every scenario the collection ships: the examples' inventories and molecule's."""
    def group_vars(*path):
        with open(os.path.join(REPO, *path), encoding="utf-8") as src:
            return yaml.safe_load(src)
    scenarios = {name: group_vars("examples", name, "inventory.yml")["all"]["vars"]
                 for name in ("sandbox", "scality-to-aws", "scality-to-scality")}
    scenarios["molecule"] = group_vars("molecule", "default", "molecule.yml")["provisioner"]["inventory"][
        "group_vars"]["all"]
    keys = ("crr_source", "crr_sites", "crr_pairs", "crr_kafka_hosts", "crr_worker_extra_config")
    return {name: {k: v[k] for k in keys if k in v} for name, v in scenarios.items()}


@pytest.fixture(scope="module")
def playbook_configs() -> dict:
    """Scenario name -> the worker config playbooks/setup-replication.yml gives the worker role, rendered by
    Ansible from playbooks/vars/derived.yml (one local run, no service)."""
    scenarios = _scenarios()
    names = ("crr_source", "crr_sites", "crr_pairs", "crr_kafka_hosts")
    task_vars = {name: "{{ item.value.%s | default(omit) }}" % name for name in names}
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars_files": [os.path.join(REPO, "playbooks", "vars", "derived.yml")],
             "tasks": [{"name": "Worker config", "loop": "{{ scenarios | dict2items }}", "vars": task_vars,
                        "ansible.builtin.debug": {"msg": "{{ crr_worker_base_config | combine("
                                                         "item.value.crr_worker_extra_config | default({}), "
                                                         "recursive=True) }}"}}]}]
    run = run_playbook(play, {
        "scenarios": scenarios,
        "crr_notification_queue_url": "http://127.0.0.1:5000/123456789012/crr-events",
        "crr_sandbox": {"endpoints": {"source": {"url": "http://127.0.0.1:5000"},
                                      "target": {"url": "http://127.0.0.1:5001"}},
                        "kafka": {"bootstrap": "127.0.0.1:9092"}},
        "crr_molecule_api_port": 8901,
    })
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {r["item"]["key"]: r["msg"] for r in run.result("Worker config")["results"]}


@pytest.mark.parametrize("scenario", ["sandbox", "scality-to-aws", "scality-to-scality", "molecule"])
def test_the_config_the_playbook_writes_parses(playbook_configs, scenario):
    written = playbook_configs[scenario]
    config = parse_config(written)
    assert [s.site for s in config.sites] == [s["name"] for s in _scenarios()[scenario]["crr_sites"]]
    if scenario == "sandbox":  # crr_endpoint's aws_s3 keys: awsEndpoint, https, bucketName, pathStyle, ...
        entry = written["extensions"]["replication"]["destination"]["bootstrapList"][0]
        assert {"awsEndpoint", "https", "bucketName", "bucketMatch", "credentialsProfile", "pathStyle"} <= set(entry)
        assert config.sites[0].endpoint == "http://127.0.0.1:5001"
        assert config.source.notification_queue_url and config.source.scan_interval_s == 30


# ------------------------------------------------------------------------------------- a Backbeat config

BACKBEAT = os.path.join(REPO, "tests", "fixtures", "backbeat", "config.json")


def test_a_backbeat_config_fails_only_for_the_source_endpoint_it_lacks():
    """Backbeat's keys are accepted; its CloudServer source is given as s3 {host, port}, which this worker does
    not read: without an endpoint it would read the source from AWS, so the error says what to set."""
    with pytest.raises(ConfigError) as error:
        load_config(BACKBEAT)
    assert error.value.key == REPLICATION + ".source.endpoint"
    assert "CloudServer source (logSource dmd)" in str(error.value) and "http://127.0.0.1:8000" in str(error.value)


def test_a_backbeat_config_given_its_source_endpoint_parses():
    with open(BACKBEAT, encoding="utf-8") as src:
        data = json.load(src)
    data["extensions"]["replication"]["source"]["endpoint"] = "http://127.0.0.1:8000"
    config = parse_config(data)
    assert config.log_source == "dmd" and config.record_log.url == "http://127.0.0.1:9990"
    assert [s.site for s in config.sites] == ["zenko", "us-east-2"]
    assert config.queue_processor.concurrency == 10


def test_the_keys_of_backbeats_shipped_config_are_accepted():
    """Keys of Backbeat's conf/config.json beyond the fixture's: both feeds, ZooKeeper, probes, metrics, ..."""
    with open(BACKBEAT, encoding="utf-8") as src:
        data = json.load(src)
    replication = data["extensions"]["replication"]
    replication["source"]["endpoint"] = "http://127.0.0.1:8000"
    probe = {"bindAddress": "localhost", "port": 4042}
    data.update(zookeeper={"connectionString": "127.0.0.1:2181/backbeat"}, metrics={"topic": "backbeat-metrics"},
                server={"host": "127.0.0.1", "port": 8900}, certFilePaths={"key": "", "cert": "", "ca": ""})
    data["queuePopulator"].update(zookeeperPath="/queue-populator", probeServer=probe,
                                  bucketd={"host": "127.0.0.1", "port": 9000})
    replication.update(monitorReplicationFailures=True, monitorReplicationFailureExpiryTimeS=86400,
                       replayTopics=[{"topicName": "backbeat-replication-replay-0", "retries": 5}])
    replication["queueProcessor"].update(mpuPartsConcurrency=10, probeServer=[dict(probe, site="zenko")])
    replication["replicationStatusProcessor"].update(logConsumerMetricsIntervalS=60, probeServer=probe)
    assert parse_config(data).record_log.port == 9990


def test_replays_default_to_three_doubling_from_a_minute_and_are_refused_out_of_bounds():
    default = parse_config(VALID).replay
    assert (default.retries, [default.delay_ms(n) for n in range(3)]) == (3, [60_000, 120_000, 240_000])
    assert parse_config(with_change(REPLICATION + ".replay", {"retries": 0})).replay.retries == 0
    assert parse_config(with_change(REPLICATION + ".replay", {"delayS": 3000})).replay.delay_ms(2) == 3_600_000
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(REPLICATION + ".replay", {"retries": -1}))
    assert error.value.key == REPLICATION + ".replay.retries"
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(REPLICATION + ".replay", {"delaySeconds": 5}))
    assert "did you mean 'delayS'" in str(error.value)
