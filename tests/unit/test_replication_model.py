"""Replication configuration model: validation per schema, build, normalisation, comparison."""

from __future__ import annotations

import json
import os

import botocore.session
import pytest
from ansible_collections.backbeat.crr.plugins.module_utils.replication import (
    ReplicationConfigError,
    build,
    configurations_match,
    normalize,
    validate,
)
from botocore.parsers import RestXMLParser
from botocore.serialize import RestXMLSerializer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "cloudserver")
SRC = "arn:aws:iam::123456789012:role/src"
TGT = "arn:aws:iam::123456789012:role/tgt"
S3_MODEL = botocore.session.get_session().get_service_model("s3")


def capture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return json.load(handle)


def parsed_get_replication(name):
    """The ReplicationConfiguration boto3 returns for a captured CloudServer GetBucketReplication reply."""
    response = capture(name)["response"]
    operation = S3_MODEL.operation_model("GetBucketReplication")
    parsed = RestXMLParser().parse(
        {"body": response["body"].encode(), "headers": response["headers"], "status_code": response["status"]},
        operation.output_shape)
    return parsed["ReplicationConfiguration"]


def serialized_put_body(configuration):
    operation = S3_MODEL.operation_model("PutBucketReplication")
    request = RestXMLSerializer().serialize_to_request(
        {"Bucket": "b", "ReplicationConfiguration": configuration}, operation)
    return request["body"].decode()


def rule(**options):
    return {"destination_bucket": "target-bucket", "status": "Enabled", **options}


def error_of(role, rules, schema="cloudserver", site_types=None):
    with pytest.raises(ReplicationConfigError) as info:
        validate(role, rules, schema, site_types)
    return str(info.value)


# ---------------------------------------------------------------------- CloudServer captures (contract)


def test_built_two_role_configuration_is_the_captured_cloudserver_request_body():
    configuration = build([SRC, TGT], [rule(prefix="", destination_bucket="target-bucket", storage_class="zenko")])
    assert serialized_put_body(configuration) == capture("s1_03_put_bucket_replication_src.json")["request"]["body"]


def test_built_one_role_configuration_is_the_captured_cloudserver_request_body():
    configuration = build(SRC, [rule(destination_bucket="arn:aws:s3:::target-bucket", storage_class="us-east-2")])
    assert serialized_put_body(configuration) == capture("s1_05_put_bucket_replication_aws_src.json")["request"]["body"]


def test_cloudserver_reply_with_generated_id_matches_the_task_without_id():
    wanted = normalize(build([SRC, TGT], [rule(storage_class="zenko")]))
    current = normalize(parsed_get_replication("s1_04_get_bucket_replication_src.json"))
    assert current["rules"][0]["id"] == "MTYxOGJjOGYtM2NkNi00MTEwLWE3NzAtNGRlOGE4NDg2YTJi"
    assert configurations_match(wanted, current)


def test_cloudserver_reply_differs_when_the_task_gives_another_id():
    wanted = normalize(build([SRC, TGT], [rule(id="mine", storage_class="zenko")]))
    assert not configurations_match(wanted, normalize(parsed_get_replication("s1_04_get_bucket_replication_src.json")))


def test_cloudserver_reply_differs_when_the_site_changes():
    wanted = normalize(build(SRC, [rule(storage_class="zenko")]))
    current = normalize(parsed_get_replication("s1_06_get_bucket_replication_aws_src.json"))
    assert not configurations_match(wanted, current)


def test_cloudserver_rejects_one_role_for_scality_site_and_so_does_validate():
    body = capture("s1_07_put_bucket_replication_scality_site_one_role_error.json")["response"]["body"]
    assert "Role must be a comma-separated list of two IAM roles" in body
    message = error_of([SRC], [rule(storage_class="zenko")], site_types={"zenko": "scality", "us-east-2": "aws_s3"})
    assert message.startswith("role: a Scality site needs exactly two role ARNs")


# ------------------------------------------------------------------------------------------ normalise


def test_v1_empty_prefix_equals_v2_empty_filter_with_delete_markers_disabled():
    v1 = {"Role": SRC, "Rules": [{"Prefix": "", "Status": "Enabled", "Destination": {"Bucket": "arn:aws:s3:::t"}}]}
    v2 = {"Role": SRC, "Rules": [{"ID": "gen", "Priority": 1, "Filter": {"Prefix": ""}, "Status": "Enabled",
                                  "DeleteMarkerReplication": {"Status": "Disabled"},
                                  "Destination": {"Bucket": "arn:aws:s3:::t"}}]}
    assert configurations_match(normalize(v1), normalize(v2))


def test_v2_delete_marker_replication_enabled_differs_from_v1():
    v1 = {"Role": SRC, "Rules": [{"Prefix": "", "Status": "Enabled", "Destination": {"Bucket": "t"}}]}
    v2 = {"Role": SRC, "Rules": [{"Filter": {}, "Status": "Enabled", "Priority": 1,
                                  "DeleteMarkerReplication": {"Status": "Enabled"}, "Destination": {"Bucket": "t"}}]}
    assert not configurations_match(normalize(v1), normalize(v2))


def test_bucket_name_and_bucket_arn_are_the_same_destination():
    by_name = normalize(build(SRC, [rule(destination_bucket="target-bucket")]))
    by_arn = normalize(build(SRC, [rule(destination_bucket="arn:aws:s3:::target-bucket")]))
    assert configurations_match(by_name, by_arn)


def test_filter_forms_normalise_to_prefix_and_tags():
    rules = [{"Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}]}}},
             {"Filter": {"Tag": {"Key": "k", "Value": "v"}}},
             {"Filter": {"Prefix": "z/"}}]
    normalized = normalize({"Role": SRC, "Rules": rules})["rules"]
    assert [(r["prefix"], r["tags"]) for r in normalized] == [("a/", {"k": "v"}), ("", {"k": "v"}), ("z/", {})]


def test_role_spaces_around_comma_do_not_matter():
    assert normalize({"Role": "%s , %s" % (SRC, TGT), "Rules": []})["role"] == "%s,%s" % (SRC, TGT)


def test_rule_order_does_not_matter():
    a = normalize(build(SRC, [rule(prefix="a/"), rule(prefix="b/")]))
    b = normalize(build(SRC, [rule(prefix="b/"), rule(prefix="a/")]))
    assert configurations_match(a, b)


def test_changed_prefix_status_storage_class_or_role_differ():
    base = normalize(build([SRC, TGT], [rule(prefix="a/", storage_class="zenko")]))
    for other in (build([SRC, TGT], [rule(prefix="b/", storage_class="zenko")]),
                  build([SRC, TGT], [rule(prefix="a/", storage_class="zenko", status="Disabled")]),
                  build([SRC, TGT], [rule(prefix="a/", storage_class="other")]),
                  build([TGT, SRC], [rule(prefix="a/", storage_class="zenko")]),
                  build([SRC, TGT], [rule(prefix="a/", storage_class="zenko"), rule(prefix="b/")])):
        assert not configurations_match(base, normalize(other))


def test_server_rule_attributes_the_task_does_not_manage_make_a_difference():
    current = normalize(build(SRC, [rule()]))
    current["rules"][0]["other"] = {"ExistingObjectReplication": {"Status": "Enabled"}}
    assert not configurations_match(normalize(build(SRC, [rule()])), current)


def test_no_configuration_only_matches_no_configuration():
    assert configurations_match(None, None)
    assert not configurations_match(normalize(build(SRC, [rule()])), None)


# ---------------------------------------------------------------------------------------------- build


def test_build_v2_rule_with_prefix_and_tags_uses_and_filter():
    built = build(SRC, [rule(id="r", priority=2, filter={"prefix": "p/", "tags": {"b": "2", "a": "1"}},
                             delete_marker_replication="Enabled")])
    assert built["Rules"][0] == {
        "ID": "r", "Priority": 2,
        "Filter": {"And": {"Prefix": "p/", "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]}},
        "DeleteMarkerReplication": {"Status": "Enabled"}, "Status": "Enabled",
        "Destination": {"Bucket": "arn:aws:s3:::target-bucket"}}


def test_build_v2_single_tag_uses_tag_filter_and_disabled_delete_markers_by_default():
    built = build(SRC, [rule(priority=1, filter={"tags": {"k": "v"}})])["Rules"][0]
    assert built["Filter"] == {"Tag": {"Key": "k", "Value": "v"}}
    assert built["DeleteMarkerReplication"] == {"Status": "Disabled"}


def test_build_joins_two_roles_with_a_comma():
    assert build([SRC, TGT], [rule()])["Role"] == SRC + "," + TGT


# ---------------------------------------------------------------------------------- validate: common


def test_valid_cloudserver_configuration_passes():
    validate([SRC, TGT], [rule(prefix="a/", storage_class="zenko"), rule(prefix="b/", storage_class="zenko")],
             "cloudserver", {"zenko": "scality"})


@pytest.mark.parametrize("role, message", [
    ([], "role: give one IAM role ARN"),
    (["arn:aws:iam::123456789012:user/bob"], "role: 'arn:aws:iam::123456789012:user/bob' is not an IAM role ARN"),
    ([SRC, TGT, SRC], "role: at most two ARNs"),
    (["not-an-arn"], "role: 'not-an-arn' is not an IAM role ARN"),
])
def test_role_errors(role, message):
    assert error_of(role, [rule()]).startswith(message)


def test_no_rules_is_an_error():
    assert error_of(SRC, []).startswith("rules: at least one rule")


def test_more_than_1000_rules_is_an_error():
    rules = [rule(prefix="p%04d/" % i) for i in range(1001)]
    assert error_of(SRC, rules).startswith("rules: at most 1000 rules")


def test_1000_rules_are_accepted():
    validate([SRC, TGT], [rule(prefix="p%04d/" % i) for i in range(1000)], "cloudserver")


def test_duplicate_rule_ids_are_an_error():
    assert error_of(SRC, [rule(id="x", prefix="a/"), rule(id="x", prefix="b/")]).startswith(
        "rules[1].id: 'x' is already the id of rules[0]")


def test_rule_id_longer_than_255_is_an_error():
    assert error_of(SRC, [rule(id="x" * 256)]).startswith("rules[0].id: must be 1 to 255 characters")


def test_rule_id_of_255_is_accepted():
    validate(SRC, [rule(id="x" * 255)], "cloudserver")


@pytest.mark.parametrize("destination", ["Bad_Bucket", "arn:aws:s3:::b/key", "arn:aws:iam::123456789012:role/x", ""])
def test_bad_destination_bucket_is_an_error(destination):
    assert error_of(SRC, [rule(destination_bucket=destination)]).startswith("rules[0].destination_bucket:")


def test_unknown_schema_is_an_error():
    assert error_of(SRC, [rule()], schema="minio").startswith("schema: must be one of")


# ------------------------------------------------------------------------------ validate: cloudserver


@pytest.mark.parametrize("key, value", [("priority", 1), ("filter", {"prefix": "a"}),
                                        ("delete_marker_replication", "Enabled")])
def test_cloudserver_schema_rejects_v2_attributes(key, value):
    assert error_of(SRC, [rule(**{key: value})]).startswith(
        "rules[0].%s: schema cloudserver accepts V1 prefix rules only" % key)


@pytest.mark.parametrize("prefixes", [("logs/", "logs/2024/"), ("a", "a"), ("", "b/"), ("b/", "")])
def test_cloudserver_schema_rejects_overlapping_prefixes(prefixes):
    message = error_of(SRC, [rule(prefix=prefixes[0]), rule(prefix=prefixes[1])])
    assert message.startswith("rules[1].prefix %r overlaps rules[0].prefix %r" % (prefixes[1], prefixes[0]))


def test_cloudserver_schema_rejects_two_destination_buckets():
    message = error_of(SRC, [rule(prefix="a/"), rule(prefix="b/", destination_bucket="other-bucket")])
    assert message.startswith("rules: CloudServer replicates a bucket to one destination bucket")


def test_cloudserver_schema_cloud_site_takes_one_role():
    message = error_of([SRC, TGT], [rule(storage_class="aws")], site_types={"aws": "aws_s3"})
    assert message.startswith("role: a cloud site (aws_s3) takes exactly one role ARN, got 2")


def test_cloudserver_schema_default_site_decides_when_no_storage_class():
    assert error_of([SRC], [rule()], site_types={"zenko": "scality", "": "scality"}).startswith(
        "role: a Scality site needs exactly two")
    validate([SRC], [rule()], "cloudserver", {"aws": "aws_s3", "": "aws_s3"})


def test_cloudserver_schema_unknown_site_is_an_error():
    message = error_of([SRC], [rule(storage_class="nowhere")], site_types={"zenko": "scality", "": "scality"})
    assert message.startswith("rules.storage_class: site nowhere is not a replication endpoint (known: zenko)")


def test_cloudserver_schema_without_site_types_accepts_one_or_two_roles():
    validate([SRC], [rule(storage_class="x")], "cloudserver")
    validate([SRC, TGT], [rule(storage_class="x")], "cloudserver")


def test_cloudserver_schema_mixed_sites_need_two_roles():
    types = {"zenko": "scality", "aws": "aws_s3"}
    assert error_of([SRC], [rule(storage_class="zenko,aws")], site_types=types).startswith(
        "role: a Scality site needs exactly two")


# -------------------------------------------------------------------------------------- validate: aws


def test_valid_aws_v2_configuration_passes():
    validate(SRC, [rule(priority=1, filter={"prefix": "a/", "tags": {"k": "v"}}),
                   rule(priority=2, filter={"tags": {"k": "w"}}, delete_marker_replication="Enabled")], "aws")


def test_aws_schema_takes_one_role():
    assert error_of([SRC, TGT], [rule()], schema="aws").startswith("role: schema aws takes exactly one role ARN")


def test_aws_schema_duplicate_priorities_are_an_error():
    message = error_of(SRC, [rule(priority=1), rule(priority=1)], schema="aws")
    assert message.startswith("rules[1].priority: 1 is already the priority of rules[0]")


def test_aws_schema_v2_rule_needs_priority():
    message = error_of(SRC, [rule(filter={"prefix": "a"})], schema="aws")
    assert message.startswith("rules[0].priority: V2 rules need a priority")


def test_aws_schema_rejects_mixed_v1_and_v2_rules():
    message = error_of(SRC, [rule(prefix="a/"), rule(priority=1)], schema="aws")
    assert message.startswith("rules: do not mix V1 rules")


def test_aws_schema_rejects_unknown_filter_keys():
    message = error_of(SRC, [rule(priority=1, filter={"prefix": "a", "size": 3})], schema="aws")
    assert message.startswith("rules[0].filter: unknown key(s) size")


def test_aws_schema_rejects_prefix_given_twice():
    message = error_of(SRC, [rule(priority=1, prefix="a", filter={"prefix": "b"})], schema="aws")
    assert message.startswith("rules[0]: give the prefix either as prefix or as filter.prefix")


def test_aws_schema_rejects_non_string_tag_values():
    message = error_of(SRC, [rule(priority=1, filter={"tags": {"k": 1}})], schema="aws")
    assert message.startswith("rules[0].filter.tags: keys must be non-empty and values strings")


def test_aws_schema_v1_rules_must_not_overlap():
    assert error_of(SRC, [rule(prefix="a"), rule(prefix="ab")], schema="aws").startswith("rules[1].prefix")
