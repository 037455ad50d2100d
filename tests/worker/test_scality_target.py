"""The scality target against CloudServer's captured /_/backbeat exchanges (s5_*): data then metadata under the
source's version id, delete markers and metadata changes as metadata alone, roles checked, errors classified,
servers taken in turn, and no data left behind by a copy that fails before its metadata."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest
from crr_worker.config import parse_config
from crr_worker.retry import ReplicationFailed, is_retryable
from crr_worker.sources.cloudserver import CloudServerSource
from crr_worker.targets.scality import ScalityTarget, _expected_md5, _part_number, _range

from tests.cloudserver_replay import CloudServerReplay, load_sample, records_of

BART = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
TARGET_METADATA = "/_/backbeat/metadata/target-bucket/"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def replay():
    with CloudServerReplay() as server:
        server.serve("s1_04_get_bucket_replication_src", access_key="replicationKey1")
        yield server


@pytest.fixture
def credentials(tmp_path):
    path = str(tmp_path / "credentials")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
        out.write("[replication]\naws_access_key_id = replicationKey1\naws_secret_access_key = replicationSecretKey1\n"
                  "[bart]\naws_access_key_id = accessKey1\naws_secret_access_key = verySecretKey1\n")
    return path


def make(replay, credentials, servers=None):
    """(target, source) of a worker whose source and target are both the replayed CloudServer (as captured)."""
    address = replay.url.split("//", 1)[1]
    config = parse_config({
        "kafka": {"hosts": "127.0.0.1:9092"},
        "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": 9993}},
        "extensions": {"replication": {
            "source": {"endpoint": replay.url, "credentials": {"file": credentials, "profile": "replication"}},
            "destination": {"bootstrapList": [{
                "site": "zenko", "servers": servers or [address], "canonicalId": BART, "displayName": "Bart",
                "credentials": {"file": credentials, "profile": "bart"}}]},
        }},
    })
    source = CloudServerSource(config, [])
    return ScalityTarget(config.sites[0], config.queue_processor), source


def entry_of(source, log_sample: str, key: str):
    from crr_worker.sources.record_log import parse_read_records

    page = parse_read_records({"result": {"info": {"start": 1, "end": None},
                                          "log": records_of(log_sample)}}, 1)
    return next(e for r in page.records if (e := source.entry_of(r)) and e.key == key)


def serve_no_replica_yet(replay, key: str, version_id: str) -> None:
    """The target's answer to the idempotence check before a replica exists: CloudServer's 404 ObjNotFound for a
    version it does not hold (captured for another key: s5_e07)."""
    replay.serve_for("s5_e07_get_metadata_missing_key", TARGET_METADATA + key, {"versionId": version_id},
                     access_key="accessKey1")


def test_a_version_is_stored_as_data_then_metadata_under_the_source_version_id(replay, credentials):
    replay.serve("s5_02_source_get_object_version", access_key="replicationKey1")
    replay.serve("s5_03_target_put_data")
    replay.serve("s5_04_target_put_metadata_replica")
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_27_log_after_target_replica_write", "repl/hello.txt")
    serve_no_replica_yet(replay, entry.key, entry.version_id)
    written = target.replicate(entry, source, threading.Event())
    assert written.target_version_id == entry.version_id and written.bytes_copied == 13
    assert replay.mismatches == [] and replay.unmatched == []
    puts = [(r.method, r.path.split("/")[3]) for r in replay.requests if r.path.startswith("/_/backbeat/")]
    assert puts == [("GET", "metadata"), ("PUT", "data"), ("PUT", "metadata")]


def test_a_delete_marker_is_written_as_metadata_alone(replay, credentials):
    replay.serve("s5_12_target_put_metadata_delete_marker")
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_13_log_after_delete_marker", "docs/report.txt")
    assert entry.is_delete_marker
    target.replicate(entry, source, threading.Event())
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_tagging_change_is_written_as_metadata_only_keeping_the_targets_data(replay, credentials):
    replay.serve("s5_14_target_put_metadata_only")
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_28b_log_after_tagging_and_metadata_only_replica", "repl/hello.txt")
    assert entry.metadata_only
    target.replicate(entry, source, threading.Event())
    (put,) = replay.requests_to("PUT", TARGET_METADATA)
    assert put.header("x-scal-replication-content") == "METADATA"
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_role_other_than_the_buckets_two_roles_fails_with_the_reason(replay, credentials):
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_27_log_after_target_replica_write", "repl/hello.txt")
    from dataclasses import replace

    with pytest.raises(ReplicationFailed, match="needs two roles"):
        target.replicate(replace(entry, role="arn:aws:iam::123456789012:role/src"), source, threading.Event())
    other = "arn:aws:iam::123456789012:role/src,arn:aws:iam::123456789012:role/other"
    with pytest.raises(ReplicationFailed, match="not the bucket's replication role"):
        target.replicate(replace(entry, role=other), source, threading.Event())
    assert replay.requests_to("PUT", "/_/backbeat/") == []


def test_an_account_the_target_refuses_is_a_failure_not_worth_a_retry(replay, credentials):
    replay.serve("s5_02_source_get_object_version", access_key="replicationKey1")
    replay.serve("s5_e05_put_data_wrong_account", access_key="accessKey1")
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_27_log_after_target_replica_write", "repl/hello.txt")
    serve_no_replica_yet(replay, entry.key, entry.version_id)
    with pytest.raises(Exception) as raised:
        target.replicate(entry, source, threading.Event())
    assert "AccessDenied" in str(raised.value) and not is_retryable(raised.value)


def test_a_server_that_refuses_the_connection_passes_the_request_to_the_next(replay, credentials):
    replay.serve("s5_12_target_put_metadata_delete_marker")
    address = replay.url.split("//", 1)[1]
    target, source = make(replay, credentials, servers=["127.0.0.1:%d" % _closed_port(), address])
    entry = entry_of(source, "s3_13_log_after_delete_marker", "docs/report.txt")
    target.replicate(entry, source, threading.Event())
    target.replicate(entry, source, threading.Event())  # whichever server the turn starts at
    assert len(replay.requests_to("PUT", TARGET_METADATA)) == 2 and replay.mismatches == []


def test_data_stored_for_a_copy_whose_metadata_fails_is_deleted_again(replay, credentials):
    replay.serve("s5_02_source_get_object_version", access_key="replicationKey1")
    replay.serve("s5_03_target_put_data")
    replay.serve("s5_e12_put_metadata_wrong_account", access_key="accessKey1")
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_27_log_after_target_replica_write", "repl/hello.txt")
    serve_no_replica_yet(replay, entry.key, entry.version_id)
    with pytest.raises(Exception, match="AccessDenied"):
        target.replicate(entry, source, threading.Event())
    (delete,) = replay.requests_to("POST", "/_/backbeat/batchdelete")
    stored = load_sample("s5_03_target_put_data")["response"]["body"]
    assert [{k: loc[k] for k in ("key", "dataStoreName")} for loc in json.loads(delete.body)["Locations"]] == stored


def test_a_multipart_objects_parts_are_read_by_number_and_checked_against_their_own_md5():
    metadata = json.loads(load_sample("s2_08_backbeat_get_metadata_mpu")["response"]["body"]["Body"])
    locations = metadata["location"]
    assert [_part_number(metadata, loc) for loc in locations] == [1, 2]
    assert [_expected_md5(metadata, loc) for loc in locations] == [loc["dataStoreETag"][2:] for loc in locations]
    single = json.loads(load_sample("s2_03_backbeat_get_metadata_src")["response"]["body"]["Body"])
    assert _part_number(single, single["location"][0]) is None and _range(single, single["location"][0]) is None
    assert _expected_md5(single, single["location"][0]) == single["content-md5"]


def test_a_metadata_change_the_target_lacks_the_version_for_is_copied_whole(replay, credentials):
    # CloudServer answers a metadata-only PUT of a version it does not hold with 404 ObjNotFound (s5_e15).
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_28b_log_after_tagging_and_metadata_only_replica", "repl/hello.txt")
    replay.serve_for("s5_e15_put_metadata_only_missing_target", TARGET_METADATA + entry.key,
                     {"versionId": entry.version_id})
    serve_no_replica_yet(replay, entry.key, entry.version_id)
    replay.serve("s5_02_source_get_object_version", access_key="replicationKey1")
    replay.serve("s5_03_target_put_data")
    replay.serve("s5_04_target_put_metadata_replica",  # the whole copy carries the tagging's state
                 allow=["tags.project", "originOp", "replicationInfo.content",
                        "replicationInfo.backends[0].dataStoreVersionId"])
    target.replicate(entry, source, threading.Event())
    writes = [(r.method, r.path.split("/")[3], r.header("x-scal-replication-content")) for r in replay.requests
              if r.method == "PUT"]
    assert writes == [("PUT", "metadata", "METADATA"), ("PUT", "data", None), ("PUT", "metadata", None)]
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_version_the_target_already_holds_as_replica_is_not_written_again(replay, credentials):
    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_27_log_after_target_replica_write", "repl/hello.txt")
    replica = load_sample("s5_04_target_put_metadata_replica")["request"]["body"]  # what the first copy wrote
    replay.serve_metadata("s5_01_source_get_metadata", json.dumps(replica),
                          (TARGET_METADATA + entry.key, {"versionId": entry.version_id}), access_key="accessKey1")
    written = target.replicate(entry, source, threading.Event())
    assert written.skipped and written.target_version_id == entry.version_id
    assert [r.method for r in replay.requests if r.path.startswith("/_/backbeat/")] == ["GET"]


@pytest.mark.parametrize("name,code", [
    ("s5_e01_put_data_missing_canonical_id", "BadRequest"), ("s5_e02_put_data_missing_content_md5", "BadRequest"),
    ("s5_e03_put_data_base64_md5", "BadDigest"), ("s5_e06_put_metadata_malformed_json", "MalformedPOSTRequest"),
    ("s5_e08_get_metadata_missing_bucket", "NoSuchBucket"), ("s5_e09_get_metadata_wrong_account", "AccessDenied"),
    ("s5_e10_get_metadata_invalid_version_id", "InvalidArgument"), ("s5_e13_put_data_missing_bucket", "NoSuchBucket"),
])
def test_every_captured_route_error_is_raised_with_its_code_and_none_is_retried(replay, credentials, name, code):
    from crr_worker.backbeat_routes import BackbeatClient, Route

    captured = load_sample(name)["request"]
    secrets = {"replicationKey1": "replicationSecretKey1", "accessKey1": "verySecretKey1",
               "accessKey2": "verySecretKey2"}
    signer = next(k for k in secrets if k in captured["headers"].get("Authorization", ""))
    replay.serve(name)
    secret = secrets[signer]
    client = BackbeatClient(replay.url, "us-east-1", {"aws_access_key_id": signer, "aws_secret_access_key": secret},
                            1, 10)
    headers = {k: v for k, v in captured["headers"].items() if k.lower() in ("x-scal-canonical-id", "content-md5")}
    body = captured["body"] if isinstance(captured["body"], str) else json.dumps(captured["body"])
    with pytest.raises(Exception) as raised:
        client.call(Route(captured["method"], captured["path"], captured["query"], body.encode(), headers))
    assert getattr(raised.value, "code", None) == code and not is_retryable(raised.value)
    assert replay.mismatches == [] and not raised.value.not_found


def test_the_probe_raises_a_site_error_only_when_no_server_answers(replay, credentials):
    from crr_worker.retry import is_site_error

    target, source = make(replay, credentials)
    entry = entry_of(source, "s3_13_log_after_delete_marker", "docs/report.txt")
    with pytest.raises(Exception) as answered:  # an answer, here the replay's 404 for a route it has no capture of
        target.probe(entry)
    assert not is_site_error(answered.value)  # ... means the site is up
    assert [(r.method, r.path) for r in replay.unmatched] == [("HEAD", "/target-bucket")]
    down, _ = make(replay, credentials, servers=["127.0.0.1:%d" % _closed_port()])
    with pytest.raises(Exception) as raised:
        down.probe(entry)
    assert is_site_error(raised.value)
