"""The CloudServer status writer's contract, against CloudServer replayed from its captured exchanges: an outcome
is written into the version's ObjectMD exactly as the captured `PUT /_/backbeat/metadata` wrote it, and not at
all when the version is gone, has changed since, or already shows a better outcome.

States that no GET captured (a FAILED version before its write, a COMPLETED one, a version after a tagging
update) are served by `serve_derived`: a captured GET exchange answering an ObjectMD that the captured record
log holds for that version. Nothing in them is hand-written.
"""

from __future__ import annotations

import json
import os

import pytest
from crr_worker.backbeat_routes import BackbeatClient, BackbeatError
from crr_worker.config import parse_config
from crr_worker.entries import COMPLETED, FAILED, ReplicationEntry, StatusEntry
from crr_worker.retry import is_retryable
from crr_worker.sources.cloudserver_status import CloudServerStatusWriter

from tests.cloudserver_replay import CloudServerReplay, load_sample, records_of

METADATA_ROUTE = "/_/backbeat/metadata/"
MOTO_LIKE_ID = "3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"  # any id an aws_s3 target may answer
SPECIAL_KEY = "dir with space/\u00fcn\u00efc\u00f6d\u00e9 100% #1+2=3?.txt"


@pytest.fixture
def replay():
    with CloudServerReplay() as server:
        yield server


@pytest.fixture
def make_writer(replay, tmp_path):
    """A factory of writers reading `replay` as their CloudServer, signing with the given account's keys."""
    made = []

    def make(access_key: str = "replicationKey1", secret: str = "replicationSecretKey1"):
        made.append(CloudServerStatusWriter(cloudserver_config(replay, tmp_path, access_key, secret)))
        return made[-1]

    yield make
    for writer in made:
        writer.close()


def cloudserver_config(replay, tmp_path, access_key: str, secret: str):
    """A dmd config (Backbeat's two sites) whose source is `replay`, keys in a 0600 credentials file."""
    path = str(tmp_path / ("credentials-%s" % access_key))
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write("[replication]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (access_key, secret))
    return parse_config({
        "kafka": {"hosts": "127.0.0.1:9"},
        "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": 9993}},
        "extensions": {"replication": {
            "source": {"endpoint": replay.url, "credentials": {"file": path, "profile": "replication"}},
            "destination": {"bootstrapList": [{"site": "zenko", "servers": ["127.0.0.1:8000"]},
                                              {"site": "us-east-2", "type": "aws_s3", "bucket": "target-bucket"}]},
        }},
    })


def captured_md(get_sample: str) -> str:
    """The ObjectMD (JSON) a captured GET /_/backbeat/metadata answered."""
    return load_sample(get_sample)["response"]["body"]["Body"]


def logged_md(log_sample: str, key: str, status: str) -> str:
    """The ObjectMD (JSON) of `key`'s version record in a captured record-log read, in the given status."""
    values = [e["value"] for r in records_of(log_sample) for e in r["entries"]
              if e["key"].startswith(key + "\u0000") and json.loads(e["value"])["replicationInfo"]["status"] == status]
    assert len(values) == 1, "%s holds %d %s version records of %s" % (log_sample, len(values), status, key)
    return values[0]


def serve_derived(replay, base: str, object_md: str, path: str | None = None,
                  query: dict | None = None) -> None:
    """Serve the captured GET exchange `base` answering `object_md` (for `path`/`query` when given), for a
    state that no GET captured."""
    request = load_sample(base)["request"]
    route = (path or request["path"], query if query is not None else request["query"])
    replay.serve_metadata(base, object_md, route)


def outcome(object_md: str, bucket: str, key: str, site: str, status: str, target_id: str = "") -> StatusEntry:
    """The outcome for `site` of the entry the populator made of `object_md`."""
    entry = ReplicationEntry.from_object_md(bucket, key, object_md, (site,))
    return StatusEntry(entry, site, status, reason="" if status == COMPLETED else "AccessDenied: ...",
                       target_version_id=target_id)


def puts(replay) -> list:
    return replay.requests_to("PUT", METADATA_ROUTE)


def assert_all_as_captured(replay) -> None:
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_completed_outcome_for_an_aws_s3_location_is_written_with_the_targets_version_id(replay, make_writer):
    replay.serve("s2b_04_awsloc_backbeat_get_metadata")
    replay.serve("s2b_05_awsloc_backbeat_put_metadata_completed",
                 allow=["replicationInfo.backends[0].dataStoreVersionId"])
    status = outcome(captured_md("s2b_04_awsloc_backbeat_get_metadata"), "aws-src", "aws/obj.txt", "us-east-2",
                     COMPLETED, MOTO_LIKE_ID)

    assert make_writer().write(status) is True

    assert [r.method for r in replay.requests] == ["GET", "PUT"]
    (put,) = puts(replay)
    info = put.json()["replicationInfo"]
    assert info["status"] == COMPLETED
    assert info["backends"] == [{"site": "us-east-2", "status": COMPLETED, "dataStoreVersionId": MOTO_LIKE_ID}]
    assert_all_as_captured(replay)


def test_a_completed_outcome_for_a_scality_site_is_written_as_captured(replay, make_writer):
    """s2_03 is the GET of the version s4_01 wrote: same route, same ObjectMD but for the status."""
    replay.serve("s2_03_backbeat_get_metadata_src")
    replay.serve("s4_01_backbeat_put_metadata_completed")
    md = captured_md("s2_03_backbeat_get_metadata_src")
    status = outcome(md, "src-bucket", "docs/report.txt", "zenko", COMPLETED,
                     ReplicationEntry.from_object_md("src-bucket", "docs/report.txt", md, ("zenko",)).version_id)

    assert make_writer().write(status) is True

    assert len(puts(replay)) == 1
    assert_all_as_captured(replay)


def test_a_failed_outcome_is_written_as_captured(replay, make_writer, tmp_path):
    """No GET of docs/failed.txt was captured: s2_03's exchange answers the PENDING ObjectMD the log holds."""
    pending = logged_md("s3_08_log_after_put_and_failed_update", "docs/failed.txt", "PENDING")
    put_request = load_sample("s4_05_backbeat_put_metadata_failed")["request"]
    serve_derived(replay, "s2_03_backbeat_get_metadata_src", pending, put_request["path"],
                  put_request["query"])
    replay.serve("s4_05_backbeat_put_metadata_failed")

    assert make_writer().write(outcome(pending, "src-bucket", "docs/failed.txt", "zenko", FAILED)) is True

    assert len(puts(replay)) == 1
    assert_all_as_captured(replay)


def test_a_version_deleted_meanwhile_is_not_written(replay, make_writer):
    replay.serve("s5_e11_get_metadata_deleted_version")
    replay.serve("s4_01_backbeat_put_metadata_completed")  # would be accepted: the writer must not send it
    md = captured_md("s2_03_backbeat_get_metadata_src")
    status = outcome(md, "src-bucket", "docs/report.txt", "zenko", COMPLETED, "any")

    assert make_writer().write(status) is False

    assert puts(replay) == []
    assert_all_as_captured(replay)


def test_a_newer_change_made_meanwhile_keeps_its_pending_status(replay, make_writer, tmp_path):
    """The first copy's outcome arrives after a tagging update: the version now waits for the tags' change
    (content METADATA, PUT_TAGGING), whose own outcome will write the status."""
    serve_derived(replay, "s2b_04_awsloc_backbeat_get_metadata",
                  logged_md("s2b_09_awsloc_log_after_put_object_tagging", "aws/obj.txt", "PENDING"))
    replay.serve("s2b_05_awsloc_backbeat_put_metadata_completed",
                 allow=["replicationInfo.backends[0].dataStoreVersionId"])
    status = outcome(captured_md("s2b_04_awsloc_backbeat_get_metadata"), "aws-src", "aws/obj.txt", "us-east-2",
                     COMPLETED, MOTO_LIKE_ID)

    assert make_writer().write(status) is False

    assert puts(replay) == []
    assert_all_as_captured(replay)


def test_a_second_change_of_the_same_kind_made_meanwhile_keeps_its_pending_status(replay, make_writer, tmp_path):
    """Two tagging updates in a row have the same content (METADATA, PUT_TAGGING): the first one's outcome must
    not mark the second COMPLETED, which its tags never reached."""
    first = logged_md("s2b_09_awsloc_log_after_put_object_tagging", "aws/obj.txt", "PENDING")
    second = json.loads(first)
    second["tags"] = {"project": "gamma"}
    serve_derived(replay, "s2b_04_awsloc_backbeat_get_metadata", json.dumps(second))
    status = outcome(first, "aws-src", "aws/obj.txt", "us-east-2", COMPLETED, MOTO_LIKE_ID)
    assert status.entry.content == ("METADATA", "PUT_TAGGING")

    assert make_writer().write(status) is False

    assert puts(replay) == []


def test_a_failed_outcome_never_overwrites_a_completed_site(replay, make_writer, tmp_path):
    """Two processors copied the same version (a partition moved mid-copy): one wrote the replica, the other
    failed; the version is replicated whatever the second met."""
    serve_derived(replay, "s2_03_backbeat_get_metadata_src",
                  logged_md("s3_07_log_after_backbeat_put_metadata_completed", "docs/report.txt", "COMPLETED"))
    status = outcome(captured_md("s2_03_backbeat_get_metadata_src"), "src-bucket", "docs/report.txt", "zenko", FAILED)

    assert make_writer().write(status) is False

    assert puts(replay) == []
    assert_all_as_captured(replay)


def test_an_outcome_the_metadata_already_shows_is_not_written_again(replay, make_writer, tmp_path):
    """A status handed again after a crash before its commit costs one GET, no write."""
    completed = logged_md("s3_07_log_after_backbeat_put_metadata_completed", "docs/report.txt", "COMPLETED")
    serve_derived(replay, "s2_03_backbeat_get_metadata_src", completed)
    target_id = json.loads(completed)["replicationInfo"]["backends"][0]["dataStoreVersionId"]
    status = outcome(captured_md("s2_03_backbeat_get_metadata_src"), "src-bucket", "docs/report.txt", "zenko",
                     COMPLETED, target_id)

    assert make_writer().write(status) is False

    assert puts(replay) == []
    assert_all_as_captured(replay)


def test_a_wrong_account_is_refused_with_an_error_that_is_not_retried(replay, make_writer):
    replay.serve("s5_e09_get_metadata_wrong_account")
    status = outcome(captured_md("s5_01_source_get_metadata"), "src-bucket", "repl/hello.txt", "zenko", COMPLETED,
                     "any")

    with pytest.raises(BackbeatError) as error:
        make_writer("accessKey2", "verySecretKey2").write(status)

    assert (error.value.status, error.value.code) == (403, "AccessDenied")
    assert is_retryable(error.value) is False
    assert puts(replay) == []
    assert_all_as_captured(replay)


@pytest.mark.parametrize("status, code, retryable", [
    (500, "InternalError", True), (502, "", True), (503, "ServiceUnavailable", True), (503, "SlowDown", True),
    (429, "", True), (403, "AccessDenied", False), (404, "ObjNotFound", False), (400, "InvalidArgument", False),
])
def test_a_backbeat_error_is_retryable_only_when_the_server_or_its_load_is_to_blame(status, code, retryable):
    error = BackbeatError(status, code, "message", "GET /_/backbeat/metadata/b/k")
    assert error.retryable is retryable
    assert is_retryable(error) is retryable


def test_a_special_key_is_percent_encoded_in_the_route_as_cloudserver_received_it(replay):
    captured = load_sample("s2_09_backbeat_get_metadata_special_key")["request"]
    replay.serve("s2_09_backbeat_get_metadata_special_key")
    client = BackbeatClient(replay.url, "us-east-1", {"aws_access_key_id": "replicationKey1",
                                                      "aws_secret_access_key": "replicationSecretKey1"}, 1, 5)
    try:
        metadata = client.get_metadata("src-bucket", SPECIAL_KEY, captured["query"]["versionId"])
    finally:
        client.close()

    assert metadata["key"] == SPECIAL_KEY
    assert [r.path for r in replay.requests] == [captured["path"]]
    assert_all_as_captured(replay)


def test_the_metadata_is_read_for_the_outcomes_version_never_for_the_keys_latest(replay, make_writer):
    """CloudServer also answers the route without versionId (s2_04: the latest version); an outcome is about
    one version, which may no longer be the latest."""
    replay.serve("s2_04_backbeat_get_metadata_no_versionid")
    replay.serve("s2_03_backbeat_get_metadata_src")
    replay.serve("s4_01_backbeat_put_metadata_completed")
    md = captured_md("s2_03_backbeat_get_metadata_src")
    status = outcome(md, "src-bucket", "docs/report.txt", "zenko", COMPLETED,
                     ReplicationEntry.from_object_md("src-bucket", "docs/report.txt", md, ("zenko",)).version_id)

    make_writer().write(status)

    gets = replay.requests_to("GET", METADATA_ROUTE)
    assert [r.query for r in gets] == [{"versionId": status.entry.version_id}]
    assert_all_as_captured(replay)
