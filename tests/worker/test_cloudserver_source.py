"""The CloudServer source against the requests and responses captured from a real CloudServer 8.8: record-log
pages parsed to numbered records, what of them becomes a replication entry, the two version-id forms, and the
entry on Kafka carrying the ObjectMD byte for byte."""

from __future__ import annotations

import json

import pytest
from crr_worker.config import parse_config
from crr_worker.entries import ReplicationEntry
from crr_worker.object_md import internal_version_id, overall_status, wire_version_id
from crr_worker.sources.base import SourceObject
from crr_worker.sources.cloudserver import CloudServerSource
from crr_worker.sources.record_log import parse_read_records

from tests.cloudserver_replay import load_sample


def page_of(name: str):
    captured = load_sample(name)
    start = captured["request"]["body"]["args"]["rpcArgs"][0]["startSeq"]
    return parse_read_records(captured["response"]["body"], start)


def cloudserver_config(sites=("zenko", "us-east-2"), buckets=()):
    return parse_config({
        "kafka": {"hosts": "127.0.0.1:9092"},
        "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": 9993}},
        "extensions": {"replication": {
            "source": {"endpoint": "http://127.0.0.1:8000", "buckets": list(buckets)},
            "destination": {"bootstrapList": [{"site": s, "type": "aws_s3"} for s in sites]},
        }},
    })


def entries_of(name: str, **config) -> list[ReplicationEntry]:
    source = CloudServerSource(cloudserver_config(**config), [])
    return [e for r in page_of(name).records if (e := source.entry_of(r))]


def test_a_record_logs_seq_is_info_start_plus_the_records_index_and_the_next_read_starts_after_info_end():
    page = page_of("s3_05_log_after_put_object")
    assert [r.seq for r in page.records] == [16, 17]
    assert page.next_seq == 18
    assert [r.key for r in page.records] == ["docs/report.txt", "docs/report.txt\u000098204748556255999999RG001  0"]


def test_a_limited_read_ends_at_start_plus_limit_and_reading_past_the_end_or_an_unknown_log_is_empty():
    limited = page_of("s3_25_readrecords_limit")
    assert len({r.seq for r in limited.records}) == load_sample("s3_25_readrecords_limit")["request"]["body"]["args"][
        "rpcArgs"][0]["limit"]
    for name in ("s3_24_readrecords_past_end", "s3_26_readrecords_unknown_logname"):
        page = page_of(name)
        start = load_sample(name)["request"]["body"]["args"]["rpcArgs"][0]["startSeq"]
        assert (page.records, page.next_seq) == ([], start)


def test_an_object_write_logs_master_and_version_and_only_the_version_becomes_an_entry():
    (entry,) = entries_of("s3_05_log_after_put_object")
    assert (entry.bucket, entry.key, entry.sites) == ("src-bucket", "docs/report.txt", ("zenko",))
    assert entry.version_id == wire_version_id("98204748556255999999RG001  0")
    assert entry.content == ("DATA", "METADATA")
    assert (entry.size, entry.etag) == (21, "45329d00e2b9676f7d2c67ab97c1269d")


@pytest.mark.parametrize("name", [
    "s3_01_log_after_create_bucket", "s3_02_log_after_put_bucket_versioning", "s3_03_log_after_put_bucket_replication",
    "s3_04_log_after_aws_src_and_target_bucket_setup", "s3_07_log_after_backbeat_put_metadata_completed",
    "s3_15_log_after_delete_specific_version", "s3_17b_log_after_phd_repair_15s_later",
    "s3_28_log_after_target_mpu_and_delete_marker_replica", "s2b_08_awsloc_log_after_completed",
])
def test_bucket_records_deletes_placeholders_repairs_and_our_own_status_and_replica_writes_give_no_entry(name):
    assert page_of(name).records
    assert entries_of(name) == []


def test_a_status_update_that_failed_is_skipped_while_the_pending_write_before_it_is_kept():
    entries = entries_of("s3_08_log_after_put_and_failed_update")
    assert [(e.key, e.content) for e in entries] == [("docs/failed.txt", ("DATA", "METADATA"))]


def test_a_delete_marker_is_a_metadata_entry_and_a_tagging_update_a_metadata_change():
    (marker,) = entries_of("s3_13_log_after_delete_marker")
    assert marker.is_delete_marker and marker.content == ("METADATA",) and not marker.metadata_only
    (tagging,) = entries_of("s2b_09_awsloc_log_after_put_object_tagging")
    assert tagging.metadata_only and tagging.content == ("METADATA", "PUT_TAGGING")
    assert tagging.sites == ("us-east-2",)


def test_a_multipart_object_and_a_special_key_keep_their_size_and_raw_utf8_key():
    (mpu,) = entries_of("s3_21_log_after_multipart_upload")
    assert mpu.key == "mpu/big.bin" and mpu.etag.endswith("-2") and mpu.size == 10 * 1024 * 1024
    (special,) = entries_of("s3_23_log_after_special_key")
    assert special.key == "dir with space/ünïcödé 100% #1+2=3?.txt"


def test_versions_for_a_site_the_worker_does_not_serve_or_of_another_bucket_give_no_entry():
    assert entries_of("s3_05_log_after_put_object", sites=("us-east-2",)) == []
    assert entries_of("s3_05_log_after_put_object", buckets=("aws-src",)) == []
    assert len(entries_of("s3_06_log_after_put_object_aws_src", buckets=("aws-src",))) == 1


def test_the_wire_version_id_is_the_hex_of_the_internal_one_as_head_object_shows_it():
    put = load_sample("s2_01_put_object_src")
    wire = put["response"]["headers"]["x-amz-version-id"]
    metadata = json.loads(load_sample("s2_03_backbeat_get_metadata_src")["response"]["body"]["Body"])
    assert wire_version_id(metadata["versionId"]) == wire
    assert internal_version_id(wire) == metadata["versionId"]
    assert wire_version_id("null") == "null" and internal_version_id("not-hex") == "not-hex"


def test_an_entry_on_kafka_has_backbeats_shape_with_the_objectmd_as_logged():
    record = page_of("s3_05_log_after_put_object").records[1]
    (entry,) = entries_of("s3_05_log_after_put_object")
    key, value = entry.to_kafka()
    envelope = json.loads(value)
    assert key == b"src-bucket/docs/report.txt"
    assert envelope["type"] == "put" and envelope["bucket"] == "src-bucket"
    assert envelope["key"] == "docs/report.txt\u0000" + entry.version_id
    assert envelope["value"] == record.value  # byte for byte
    assert ReplicationEntry.from_kafka(value) == entry


def test_the_overall_status_is_failed_if_any_site_failed_processing_while_any_waits_completed_once_all_are():
    assert overall_status([{"status": "COMPLETED"}, {"status": "PENDING"}]) == "PROCESSING"
    assert overall_status([{"status": "COMPLETED"}, {"status": "FAILED"}]) == "FAILED"
    assert overall_status([{"status": "COMPLETED"}, {"status": "COMPLETED"}]) == "COMPLETED"


def test_the_per_site_status_headers_cloudserver_adds_to_a_get_are_not_carried_as_user_metadata():
    # Captured on an aws_s3 location (s2b_07): the GET answers x-amz-meta-<site>-* beside the user's own; only
    # that capture, made without a versionId, shows them, so the S3 client is stood in for with its parsed reply.
    headers = load_sample("s2b_07_awsloc_get_object_completed")["response"]["headers"]
    parsed = {k[len("x-amz-meta-"):]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
    assert set(parsed) == {"color", "us-east-2-replication-status", "us-east-2-version-id"}

    class ParsedGet:
        def open_version(self, *args):
            return SourceObject(body=None, size=0, etag="", headers={}, metadata=dict(parsed))

    source = CloudServerSource(cloudserver_config(), [])
    source.s3 = ParsedGet()
    assert source.open_version("aws-src", "aws/obj.txt", "v").metadata == {"color": "blue"}
