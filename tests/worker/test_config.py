"""The config is validated once; every invalid key is named in the error, and the CLI exits 2."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from crr_worker.config import ConfigError, parse_config, part_size_for

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
    assert config.queue_processor.mpu_threshold == 64 * 1024 * 1024
    assert config.api.host == "127.0.0.1"


def test_credentials_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "creds"
    path.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(REPLICATION + ".source.credentials", {"file": str(path)}))
    assert error.value.key == REPLICATION + ".source.credentials.file" and "0600" in str(error.value)


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
    path.write_text(json.dumps(VALID))
    result = crr_worker("check-config", str(path))
    assert result.returncode == 0 and "aws1, zenko" in result.stdout


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
