"""module_utils/policy.py: loading, validation, order-insensitive comparison and the generators."""

from __future__ import annotations

import json

import pytest
from ansible_collections.backbeat.crr.plugins.module_utils.policy import (
    PolicyError,
    load_document,
    normalize_policy,
    policies_differ,
    replication_policy,
    trust_policy,
    validate_bucket,
    validate_name,
    validate_path,
    validate_policy,
)

ALLOW_LIST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::b"]}]}


def _doc(**statement):
    base = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}
    base.update(statement)
    return {"Version": "2012-10-17", "Statement": [base]}


# ------------------------------------------------------------ loading

def test_load_accepts_a_dict_and_returns_a_copy():
    loaded = load_document(ALLOW_LIST, "document")
    assert loaded == ALLOW_LIST and loaded is not ALLOW_LIST


def test_load_accepts_a_json_string():
    assert load_document(json.dumps(ALLOW_LIST), "document") == ALLOW_LIST


def test_load_accepts_url_encoded_json_as_iam_returns_it():
    assert load_document("%7B%22Statement%22%3A%20%5B%5D%7D", "document") == {"Statement": []}


def test_load_rejects_malformed_json_naming_the_option():
    with pytest.raises(PolicyError, match=r"^document: not valid JSON"):
        load_document('{"Statement": [', "document")


def test_load_rejects_json_that_is_not_an_object():
    with pytest.raises(PolicyError, match=r"^document: the JSON must be an object"):
        load_document("[1, 2]", "document")


# ------------------------------------------------------------ validation

def test_valid_identity_policy_passes():
    assert validate_policy(_doc(), "document") == _doc()


def test_document_without_statement_is_rejected():
    with pytest.raises(PolicyError, match=r"^document: the document has no 'Statement'"):
        validate_policy({"Version": "2012-10-17"}, "document")


def test_empty_statement_is_rejected():
    with pytest.raises(PolicyError, match="'Statement' is empty"):
        validate_policy({"Statement": []}, "document")


@pytest.mark.parametrize("effect", ["Permit", "allow", None])
def test_effect_other_than_allow_or_deny_is_rejected(effect):
    with pytest.raises(PolicyError, match=r"^document: statement 1: Effect must be 'Allow' or 'Deny'"):
        validate_policy(_doc(Effect=effect), "document")


@pytest.mark.parametrize("action", ["ListBucket", ["s3:ListBucket", "GetObject"], ":x"])
def test_action_without_service_prefix_is_rejected(action):
    with pytest.raises(PolicyError, match="has no service prefix"):
        validate_policy(_doc(Action=action), "document")


@pytest.mark.parametrize("action", ["*", "s3:*", "s3:Get*", "iam:PassRole", "s3:GetObject?ersion"])
def test_wildcard_and_prefixed_actions_are_accepted(action):
    validate_policy(_doc(Action=action), "document")


@pytest.mark.parametrize("resource", ["bucket", "s3:::bucket", "arn:aws:s3", ""])
def test_resource_neither_arn_nor_star_is_rejected(resource):
    with pytest.raises(PolicyError, match=r"statement 1: .*(neither an ARN nor '\*'|non-empty strings)"):
        validate_policy(_doc(Resource=resource), "document")


@pytest.mark.parametrize("resource", ["*", "arn:aws:s3:::b/*", "arn:aws:ec2:*:*:instance/*",
                                      "arn:aws:iam::111111111111:role/x"])
def test_arn_and_star_resources_are_accepted(resource):
    validate_policy(_doc(Resource=resource), "document")


def test_statement_without_action_is_rejected():
    document = {"Statement": [{"Effect": "Allow", "Resource": "*"}]}
    with pytest.raises(PolicyError, match="has no 'Action'"):
        validate_policy(document, "document")


def test_identity_statement_without_resource_is_rejected():
    with pytest.raises(PolicyError, match="has no 'Resource'"):
        validate_policy({"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}, "document")


def test_identity_policy_with_a_principal_is_rejected():
    with pytest.raises(PolicyError, match="must not"):
        validate_policy(_doc(Principal={"Service": "backbeat"}), "document")


def test_trust_policy_needs_a_principal():
    document = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
    with pytest.raises(PolicyError, match=r"^assume_role_policy_document: statement 1 has no 'Principal'"):
        validate_policy(document, "assume_role_policy_document", trust=True)


def test_generated_trust_policy_is_valid():
    validate_policy(trust_policy(["backbeat"]), "assume_role_policy_document", trust=True)


def test_unknown_version_is_rejected():
    with pytest.raises(PolicyError, match="Version '2020-01-01'"):
        validate_policy(dict(_doc(), Version="2020-01-01"), "document")


@pytest.mark.parametrize("name", ["backbeat", "bb-replication_1", "a+b=c,d.e@f", "x" * 64])
def test_valid_role_names(name):
    assert validate_name(name, "name") == name


@pytest.mark.parametrize("name", ["", "bad name", "role/x", "x" * 65, "é"])
def test_invalid_role_names_are_rejected_naming_the_option(name):
    with pytest.raises(PolicyError, match=r"^roles: .* is not a valid IAM role name"):
        validate_name(name, "roles")


def test_policy_names_may_be_128_long():
    validate_name("p" * 128, "name", kind="policy")
    with pytest.raises(PolicyError, match="IAM policy name"):
        validate_name("p" * 129, "name", kind="policy")


@pytest.mark.parametrize("path", ["/", "/backbeat/", "/a/b/"])
def test_valid_paths(path):
    validate_path(path, "path")


@pytest.mark.parametrize("path", ["", "backbeat", "/backbeat", "backbeat/", "/a b/"])
def test_invalid_paths_are_rejected(path):
    with pytest.raises(PolicyError, match=r"^path: .* must start and end with '/'"):
        validate_path(path, "path")


@pytest.mark.parametrize("bucket", ["arn:aws:s3:::b", "b/*", "ab", "", "my bucket"])
def test_bucket_option_takes_a_bare_name(bucket):
    with pytest.raises(PolicyError, match=r"^source_bucket: .* is not a bucket name"):
        validate_bucket(bucket, "source_bucket")


# ------------------------------------------------------------ comparison

def test_single_element_lists_equal_scalars():
    assert not policies_differ(_doc(), ALLOW_LIST)


def test_missing_version_defaults_to_2008_10_17():
    without = {"Statement": _doc()["Statement"]}
    assert not policies_differ(without, dict(without, Version="2008-10-17"))
    assert policies_differ(without, _doc())  # 2012-10-17 is another language version


def test_statement_object_equals_a_one_statement_list():
    assert not policies_differ({"Version": "2012-10-17", "Statement": _doc()["Statement"][0]}, _doc())


def test_order_of_statements_actions_resources_and_principals_is_ignored():
    a = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:A", "s3:B"], "Resource": ["arn:aws:s3:::x", "arn:aws:s3:::y"]},
        {"Effect": "Allow", "Principal": {"Service": ["b", "a"]}, "Action": "sts:AssumeRole"},
    ]}
    b = {"Statement": [
        {"Action": "sts:AssumeRole", "Principal": {"Service": ["a", "b"]}, "Effect": "Allow"},
        {"Resource": ["arn:aws:s3:::y", "arn:aws:s3:::x"], "Action": ["s3:B", "s3:A"], "Effect": "Allow"},
    ], "Version": "2012-10-17"}
    assert not policies_differ(a, b)


def test_action_case_is_ignored_but_resource_case_is_not():
    assert not policies_differ(_doc(Action="S3:listbucket"), _doc())
    assert policies_differ(_doc(Resource="arn:aws:s3:::B"), _doc())


def test_condition_values_compare_as_sets():
    one = _doc(Condition={"StringEquals": {"aws:SourceAccount": "111111111111"}})
    listed = _doc(Condition={"StringEquals": {"aws:SourceAccount": ["111111111111"]}})
    other = _doc(Condition={"StringEquals": {"aws:SourceAccount": ["222222222222"]}})
    assert not policies_differ(one, listed)
    assert policies_differ(one, other)


def test_bare_account_principal_equals_its_root_arn():
    bare = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "111111111111"}, "Action": "sts:AssumeRole"}]}
    arn = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::111111111111:root"]},
                          "Action": "sts:AssumeRole"}]}
    assert not policies_differ(bare, arn)


def test_empty_sid_equals_no_sid():
    assert not policies_differ(_doc(Sid=""), _doc())
    assert policies_differ(_doc(Sid="Replication"), _doc())


def test_a_real_difference_is_seen():
    assert policies_differ(_doc(Effect="Deny"), _doc())
    assert policies_differ(_doc(Action=["s3:ListBucket", "s3:GetObject"]), _doc())


def test_a_json_string_compares_with_its_dict():
    assert not policies_differ(json.dumps(_doc()), _doc())


def test_none_differs_from_a_document():
    assert policies_differ(None, _doc())
    assert not policies_differ(None, None)


def test_normalize_leaves_the_input_untouched():
    document = _doc()
    normalize_policy(document)
    assert document == _doc()


# ------------------------------------------------------------ generators

def test_trust_policy_for_backbeat_is_the_seeds_one():
    assert trust_policy(["backbeat"]) == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "backbeat"}, "Action": "sts:AssumeRole"}]}


def test_trust_policy_for_several_services_lists_them():
    assert trust_policy(["backbeat", "s3.amazonaws.com"])["Statement"][0]["Principal"] == \
        {"Service": ["backbeat", "s3.amazonaws.com"]}


def test_replication_policy_for_a_scality_target_is_the_seeds_one():
    assert replication_policy("source-bucket", "target-bucket", "scality") == {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObjectVersion", "s3:GetObjectVersionAcl"],
             "Resource": ["arn:aws:s3:::source-bucket/*"]},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetReplicationConfiguration"],
             "Resource": ["arn:aws:s3:::source-bucket"]},
            {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete"],
             "Resource": "arn:aws:s3:::target-bucket/*"},
        ],
    }


def test_replication_policy_for_a_cloud_target_adds_the_tagging_actions():
    statements = replication_policy("src", "tgt", "aws_s3")["Statement"]
    assert statements[0]["Action"] == ["s3:GetObjectVersion", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
    assert statements[1]["Action"] == ["s3:ListBucket", "s3:GetReplicationConfiguration"]
    assert statements[2]["Action"] == ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]


def test_generated_replication_policy_is_valid():
    validate_policy(replication_policy("src", "tgt", "aws_s3"), "document")


def test_replication_policy_rejects_an_unknown_target_type():
    with pytest.raises(PolicyError, match=r"^target_type:"):
        replication_policy("src", "tgt", "azure")
