"""The replay server answers like the captured CloudServer and refuses requests unlike the captured ones.

Every expected answer here is read from the captured samples, never written by hand, so a test fails
when the replay server drifts from what CloudServer really sent.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
from urllib.parse import quote

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.cloudserver_replay import SAMPLES_DIR, CloudServerReplay, load_sample, records_of, wire_json

SECRETS = {"accessKey1": "verySecretKey1", "accessKey2": "verySecretKey2", "replicationKey1": "replicationSecretKey1"}
COMPLETED_PUT = "s5_07_source_put_metadata_completed"
BACKEND_VERSION_ID = "replicationInfo.backends[0].dataStoreVersionId"


def run1_log_samples() -> list:
    """The record-log captures of run 1 (s3_*), which together hold its whole log, in seq order."""
    samples = []
    for path in glob.glob(os.path.join(SAMPLES_DIR, "s3_*.json")):
        name = os.path.basename(path)[: -len(".json")]
        sample = load_sample(name)
        body = sample["request"]["body"]
        if isinstance(body, dict) and body["args"]["rpcArgs"][0].get("limit") == 500:
            samples.append((body["args"]["rpcArgs"][0]["startSeq"], name))
    return [name for _, name in sorted(samples)]


def run1_log(upto: str = "") -> list:
    """Run 1's records from seq 1, up to and including the capture `upto` (all of them by default)."""
    records = []
    for name in run1_log_samples():
        info = load_sample(name)["response"]["body"]["result"]["info"]
        assert info["start"] == len(records) + 1, "the captures must cover the log with no gap"
        records += records_of(name)
        if name == upto:
            break
    return records


def replay_request(replay: CloudServerReplay, sample_name: str) -> requests.Response:
    """Send the captured request of an unsigned (record-log) sample again, with the captured body."""
    request = load_sample(sample_name)["request"]
    body = request["body"]
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
    return requests.request(request["method"], replay.url + request["path"], data=data)


def sample_url(replay: CloudServerReplay, request: dict) -> str:
    """The captured request's URL on the replay server, query encoded as the capture scripts sent it."""
    query = "&".join(
        name if value == "" else name + "=" + quote(value, safe="") for name, value in request["query"].items()
    )
    return replay.url + request["path"] + ("?" + query if query else "")


def signed(method: str, url: str, body: bytes = b"", headers=None, access_key: str = "accessKey1") -> requests.Response:
    """A request signed with SigV4 the way the capture scripts signed theirs."""
    aws_request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(access_key, SECRETS[access_key]), "s3", "us-east-1").add_auth(aws_request)
    return requests.request(method, url, data=body, headers=dict(aws_request.headers.items()))


def signed_like(replay: CloudServerReplay, sample_name: str, body=None, headers=None, access_key=None):
    """Send a signed sample's request again, signed by the same key unless told otherwise."""
    request = load_sample(sample_name)["request"]
    if body is None:
        body = request["body"]
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    data = body if isinstance(body, bytes) else body.encode()
    if headers is None:
        headers = {name: value for name, value in request["headers"].items() if name.lower().startswith("x-scal-")}
        headers.update({name: value for name, value in request["headers"].items() if name.lower() == "content-md5"})
    key = access_key or request["headers"]["Authorization"].rsplit(" ", 1)[-1].rstrip(">")
    return signed(request["method"], sample_url(replay, request), data, headers, key)


@pytest.fixture
def replay():
    with CloudServerReplay() as server:
        yield server


# -- the record log


@pytest.mark.parametrize("sample_name", run1_log_samples())
def test_each_captured_log_page_is_answered_byte_for_byte(replay, sample_name):
    replay.serve_record_log(run1_log(upto=sample_name))
    response = replay_request(replay, sample_name)
    captured = load_sample(sample_name)["response"]
    assert response.status_code == captured["status"] == 200
    assert response.content == wire_json(captured["body"])
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize(
    "sample_name",
    [
        "s3_24_readrecords_past_end",
        "s3_25_readrecords_limit",
        "s3_26_readrecords_unknown_logname",
        "s3_29_readrecords_missing_logname",
        "s3_30_readrecords_unknown_call",
        "s3_31_recordlog_get_method",
    ],
)
def test_record_log_edge_cases_answer_as_captured(replay, sample_name):
    replay.serve_record_log(run1_log())
    response = replay_request(replay, sample_name)
    captured = load_sample(sample_name)["response"]
    assert (response.status_code, response.json()) == (captured["status"], captured["body"])
    assert response.content == wire_json(captured["body"])
    assert not replay.mismatches


def test_limit_pages_through_the_whole_log(replay):
    records = run1_log()
    replay.serve_record_log(records)
    read, next_seq = [], 1
    while True:
        body = {
            "call": "readRecords",
            "args": {"logName": "s3-recordlog", "rpcArgs": [{"startSeq": next_seq, "limit": 10}]},
        }
        result = requests.post(replay.url + "/MDFile/recordLog", data=json.dumps(body)).json()["result"]
        if result["info"]["start"] is None:
            break
        assert result["info"] == {"start": next_seq, "end": next_seq + len(result["log"]) - 1}
        assert len(result["log"]) <= 10
        read += result["log"]
        next_seq = result["info"]["end"] + 1
    assert read == records


def test_first_seq_numbers_the_records_and_appended_records_are_read_next(replay):
    replay.serve_record_log(records_of("s3_27_log_after_target_replica_write"), first_seq=54)
    first = replay_request(replay, "s3_27_log_after_target_replica_write")
    assert first.json() == load_sample("s3_27_log_after_target_replica_write")["response"]["body"]
    from_seq_1 = {"call": "readRecords", "args": {"logName": "s3-recordlog", "rpcArgs": [{"startSeq": 1, "limit": 2}]}}
    info = requests.post(replay.url + "/MDFile/recordLog", data=json.dumps(from_seq_1)).json()["result"]["info"]
    assert info == {"start": 54, "end": 55}

    replay.append_records(records_of("s3_28_log_after_target_mpu_and_delete_marker_replica"))
    grown = replay_request(replay, "s3_28_log_after_target_mpu_and_delete_marker_replica")
    assert grown.json() == load_sample("s3_28_log_after_target_mpu_and_delete_marker_replica")["response"]["body"]


def test_read_records_arguments_that_were_never_captured_are_mismatches(replay):
    replay.serve_record_log(run1_log())
    body = {"call": "readRecords", "args": {"logName": "s3-recordlog", "rpcArgs": [{"startSeq": 1}]}}
    response = requests.post(replay.url + "/MDFile/recordLog", data=json.dumps(body))
    assert response.status_code == 400
    assert response.json()["code"] == "ReplayMismatch"
    assert len(replay.mismatches) == 1 and "startSeq, limit" in replay.mismatches[0]


def test_records_of_is_the_captured_log_list():
    sample = load_sample("s3_05_log_after_put_object")
    assert records_of("s3_05_log_after_put_object") == sample["response"]["body"]["result"]["log"]
    assert [entry["key"] for record in records_of("s3_05_log_after_put_object") for entry in record["entries"]] == [
        "docs/report.txt",
        "docs/report.txt\u000098204748556255999999RG001  0",
    ]


# -- registered exchanges


def test_object_get_is_answered_byte_for_byte_as_often_as_asked(replay):
    replay.serve("s5_02_source_get_object_version")
    captured = load_sample("s5_02_source_get_object_version")["response"]
    for _ in range(2):
        response = signed_like(replay, "s5_02_source_get_object_version")
        assert response.status_code == 200
        assert response.content == captured["body"].encode() == b"replicate me\n"
        for name in (
            "Content-Type",
            "Content-Length",
            "ETag",
            "Last-Modified",
            "x-amz-version-id",
            "x-amz-tagging-count",
        ):
            assert response.headers[name] == captured["headers"][name]
    assert not replay.mismatches and not replay.unmatched
    assert len(replay.requests) == 2


def test_metadata_get_is_the_captured_json_with_the_captured_length(replay):
    replay.serve("s2_09_backbeat_get_metadata_special_key")
    response = signed_like(replay, "s2_09_backbeat_get_metadata_special_key")
    captured = load_sample("s2_09_backbeat_get_metadata_special_key")["response"]
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert len(response.content) == int(captured["headers"]["content-length"])
    assert response.json() == captured["body"]
    assert json.loads(response.json()["Body"])["key"] == "dir with space/\u00fcn\u00efc\u00f6d\u00e9 100% #1+2=3?.txt"


def test_head_tells_the_captured_length_and_sends_no_body(replay):
    replay.serve("s5_05_target_head_object")
    response = signed_like(replay, "s5_05_target_head_object")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "13"
    assert response.headers["x-amz-replication-status"] == "REPLICA"
    assert response.content == b""


def test_a_sample_whose_response_body_was_not_captured_cannot_be_served(replay):
    with pytest.raises(ValueError, match="not captured"):
        replay.serve("s6_04_get_object_part_number")


def test_an_unregistered_request_is_404_and_recorded(replay):
    replay.serve("s5_02_source_get_object_version")
    response = signed("GET", replay.url + "/src-bucket/repl/other.txt")
    assert response.status_code == 404
    assert response.json()["code"] == "ReplayUnmatched"
    assert [request.path for request in replay.unmatched] == ["/src-bucket/repl/other.txt"]
    assert not replay.mismatches


def test_the_query_must_be_the_captured_one(replay):
    replay.serve("s5_02_source_get_object_version")
    response = signed("GET", replay.url + "/src-bucket/repl/hello.txt")  # the version id left out
    assert response.status_code == 404
    assert len(replay.unmatched) == 1


# -- request-shape checks


def test_the_captured_completed_put_is_accepted_and_recorded(replay):
    replay.serve(COMPLETED_PUT)
    response = signed_like(replay, COMPLETED_PUT)
    assert response.status_code == 200
    assert (
        response.json()
        == load_sample(COMPLETED_PUT)["response"]["body"]
        == {"versionId": "98204748538625999999RG001  10"}
    )
    (request,) = replay.requests_to("PUT", "/_/backbeat/metadata/")
    assert request.json()["replicationInfo"]["status"] == "COMPLETED"


def test_a_field_changed_outside_allow_is_a_mismatch(replay):
    replay.serve(COMPLETED_PUT, allow=(BACKEND_VERSION_ID,))
    object_md = copy.deepcopy(load_sample(COMPLETED_PUT)["request"]["body"])
    object_md["replicationInfo"]["backends"][0]["status"] = "PENDING"
    response = signed_like(replay, COMPLETED_PUT, body=object_md)
    assert response.status_code == 400
    assert response.json()["code"] == "ReplayMismatch"
    assert len(replay.mismatches) == 1
    assert 'replicationInfo.backends[0].status: captured "COMPLETED", got "PENDING"' in replay.mismatches[0]


def test_a_field_changed_inside_allow_is_accepted_unless_empty(replay):
    replay.serve(COMPLETED_PUT, allow=(BACKEND_VERSION_ID,))
    object_md = copy.deepcopy(load_sample(COMPLETED_PUT)["request"]["body"])
    object_md["replicationInfo"]["backends"][0]["dataStoreVersionId"] = "some-other-version"
    assert signed_like(replay, COMPLETED_PUT, body=object_md).status_code == 200
    assert not replay.mismatches

    object_md["replicationInfo"]["backends"][0]["dataStoreVersionId"] = ""
    assert signed_like(replay, COMPLETED_PUT, body=object_md).status_code == 400
    assert BACKEND_VERSION_ID in replay.mismatches[0]


def test_missing_and_added_keys_are_mismatches(replay):
    replay.serve(COMPLETED_PUT)
    object_md = copy.deepcopy(load_sample(COMPLETED_PUT)["request"]["body"])
    del object_md["tags"]
    object_md["seq"] = 3
    assert signed_like(replay, COMPLETED_PUT, body=object_md).status_code == 400
    assert [line.rsplit(": ", 2)[-2:] for line in replay.mismatches] == [
        ["tags", "missing"],
        ["seq", "not in the captured request"],
    ]


def test_a_body_that_is_not_json_is_a_mismatch(replay):
    replay.serve(COMPLETED_PUT)
    assert signed_like(replay, COMPLETED_PUT, body="not json").status_code == 400
    assert "body: captured JSON" in replay.mismatches[0]


def test_an_unsigned_request_to_a_signed_sample_is_a_mismatch(replay):
    replay.serve("s5_01_source_get_metadata")
    request = load_sample("s5_01_source_get_metadata")["request"]
    response = requests.get(sample_url(replay, request))
    assert response.status_code == 400
    assert "Credential=replicationKey1/" in replay.mismatches[0]


def test_another_signer_is_a_mismatch_unless_the_test_names_it(replay):
    replay.serve("s5_01_source_get_metadata")
    assert signed_like(replay, "s5_01_source_get_metadata", access_key="accessKey1").status_code == 400
    assert "got 'AWS4-HMAC-SHA256 Credential=accessKey1/" in replay.mismatches[0]

    overridden = CloudServerReplay()
    with overridden:
        overridden.serve("s5_01_source_get_metadata", access_key="accessKey1")
        assert signed_like(overridden, "s5_01_source_get_metadata", access_key="accessKey1").status_code == 200
        assert not overridden.mismatches


def test_a_payload_hash_that_is_not_the_body_is_a_mismatch(replay):
    replay.serve("s5_03_target_put_data")
    request = load_sample("s5_03_target_put_data")["request"]
    headers = {
        "x-scal-canonical-id": request["headers"]["x-scal-canonical-id"],
        "content-md5": request["headers"]["content-md5"],
    }
    aws_request = AWSRequest(method="PUT", url=sample_url(replay, request), data=b"replicate me\n", headers=headers)
    S3SigV4Auth(Credentials("accessKey1", SECRETS["accessKey1"]), "s3", "us-east-1").add_auth(aws_request)
    sent = dict(aws_request.headers.items())
    sent["X-Amz-Content-SHA256"] = hashlib.sha256(b"something else").hexdigest()
    assert requests.put(sample_url(replay, request), data=b"replicate me\n", headers=sent).status_code == 400
    assert "is not the body's sha256" in replay.mismatches[0]


def test_a_data_put_without_its_canonical_id_is_a_mismatch(replay):
    replay.serve("s5_03_target_put_data")
    response = signed_like(replay, "s5_03_target_put_data", headers={"content-md5": "e3903e7d97305ccf369d5523ed5f48e2"})
    assert response.status_code == 400
    assert "header x-scal-canonical-id: captured '79a59df9" in replay.mismatches[0]


def test_a_data_put_with_other_bytes_is_a_mismatch(replay):
    replay.serve("s5_03_target_put_data")
    assert signed_like(replay, "s5_03_target_put_data").status_code == 200
    assert signed_like(replay, "s5_03_target_put_data", body="replicate ME\n").status_code == 400
    assert "body: captured 'replicate me\\n'" in replay.mismatches[0]


def test_a_large_body_is_checked_against_its_captured_size_and_md5(replay):
    replay.serve("s5_08_target_put_data_mpu_part1")
    part1 = b"a" * 5 * 1024 * 1024  # what the capture script uploaded as part 1
    assert signed_like(replay, "s5_08_target_put_data_mpu_part1", body=part1).status_code == 200
    assert signed_like(replay, "s5_08_target_put_data_mpu_part1", body=b"b" * len(part1)).status_code == 400
    assert "md5 79b281060d337b9b2b84ccf390adcf74" in replay.mismatches[0]


def test_the_replication_content_header_picks_the_metadata_only_exchange(replay):
    replay.serve("s5_04_target_put_metadata_replica")
    replay.serve("s5_14_target_put_metadata_only")
    full = signed_like(replay, "s5_04_target_put_metadata_replica")
    metadata_only = signed_like(replay, "s5_14_target_put_metadata_only")
    assert (full.status_code, metadata_only.status_code) == (200, 200)
    assert not replay.mismatches
    metadata_only_header = {"x-scal-replication-content": "METADATA"}
    full_md_as_metadata_only = signed_like(replay, "s5_04_target_put_metadata_replica", headers=metadata_only_header)
    assert full_md_as_metadata_only.status_code == 400
    assert any("header x-scal-replication-content: captured None, got 'METADATA'" in line for line in replay.mismatches)


def test_requests_are_kept_in_arrival_order(replay):
    replay.serve_record_log(run1_log())
    replay.serve("s5_01_source_get_metadata")
    replay_request(replay, "s3_25_readrecords_limit")
    signed_like(replay, "s5_01_source_get_metadata")
    signed("GET", replay.url + "/nowhere")
    assert [(request.method, request.path) for request in replay.requests] == [
        ("POST", "/MDFile/recordLog"),
        ("GET", "/_/backbeat/metadata/src-bucket/repl/hello.txt"),
        ("GET", "/nowhere"),
    ]
    assert replay.requests[1].query == {"versionId": "3938323034373438353338363235393939393939524730303120203130"}
    assert replay.requests[1].header("authorization").startswith("AWS4-HMAC-SHA256 Credential=replicationKey1/")
