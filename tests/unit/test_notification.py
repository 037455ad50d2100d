"""module_utils/notification.py: our queue configuration and our policy statement among everyone else's."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest
from ansible_collections.backbeat.crr.plugins.module_utils.notification import (
    NotificationError,
    find_queue_configuration,
    normalize_queue_configuration,
    policy_attribute,
    queue_configuration,
    send_message_statement,
    statement_id,
    validate_bucket,
    validate_events,
    validate_id,
    validate_queue_name,
    with_queue_configuration,
    with_statement,
    without_queue_configuration,
    without_statement,
)
from ansible_collections.backbeat.crr.plugins.modules.crr_bucket_notification import predicted_queue_arn

QUEUE = "arn:aws:sqs:us-east-1:111111111111:crr-events"
OTHER_QUEUE = "arn:aws:sqs:us-east-1:111111111111:audit"
OURS = queue_configuration("backbeat-crr", QUEUE, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])
FOREIGN_QUEUE = {"Id": "audit", "QueueArn": OTHER_QUEUE, "Events": ["s3:ObjectCreated:Put"],
                 "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "logs/"}]}}}
TOPIC = {"Id": "t", "TopicArn": "arn:aws:sns:us-east-1:111111111111:topic", "Events": ["s3:ObjectCreated:*"]}
LAMBDA = {"Id": "l", "LambdaFunctionArn": "arn:aws:lambda:us-east-1:111111111111:function:f",
          "Events": ["s3:ObjectRemoved:*"]}


def others():
    """A configuration as GetBucketNotificationConfiguration answers it, without ours."""
    return {"QueueConfigurations": [dict(FOREIGN_QUEUE)], "TopicConfigurations": [dict(TOPIC)],
            "LambdaFunctionConfigurations": [dict(LAMBDA)], "EventBridgeConfiguration": {},
            "ResponseMetadata": {"HTTPStatusCode": 200}}


def error_of(function, value):
    with pytest.raises(NotificationError) as info:
        function(value)
    return str(info.value)


# ------------------------------------------------------------------------------------ bucket configuration


def test_ours_is_added_and_every_other_configuration_is_kept():
    configuration, changed = with_queue_configuration(others(), OURS)
    assert changed is True
    assert configuration["QueueConfigurations"][0]["Id"] == "audit"
    assert configuration["QueueConfigurations"][1] == OURS
    assert configuration["TopicConfigurations"] == [TOPIC]
    assert configuration["LambdaFunctionConfigurations"] == [LAMBDA]
    assert configuration["EventBridgeConfiguration"] == {}
    assert "ResponseMetadata" not in configuration


def test_an_empty_bucket_configuration_gets_only_ours():
    assert with_queue_configuration({}, OURS) == ({"QueueConfigurations": [OURS]}, True)
    assert with_queue_configuration(None, OURS) == ({"QueueConfigurations": [OURS]}, True)


def test_ours_is_replaced_in_place_by_its_id():
    current = others()
    current["QueueConfigurations"] = [dict(OURS, Events=["s3:ObjectCreated:Put"]), dict(FOREIGN_QUEUE)]
    configuration, changed = with_queue_configuration(current, OURS)
    assert changed is True
    assert [entry["Id"] for entry in configuration["QueueConfigurations"]] == ["backbeat-crr", "audit"]
    assert configuration["QueueConfigurations"][0] == OURS


def test_ours_pointing_at_another_queue_is_replaced():
    current = {"QueueConfigurations": [dict(OURS, QueueArn=OTHER_QUEUE)]}
    configuration, changed = with_queue_configuration(current, OURS)
    assert changed is True and configuration == {"QueueConfigurations": [OURS]}


def test_ours_with_a_filter_the_task_does_not_give_is_replaced():
    current = {"QueueConfigurations": [dict(OURS, Filter={"Key": {"FilterRules": [{"Name": "Prefix", "Value": "a"}]}})]}
    configuration, changed = with_queue_configuration(current, OURS)
    assert changed is True and configuration == {"QueueConfigurations": [OURS]}


def test_events_in_another_order_are_no_change():
    current = {"QueueConfigurations": [dict(OURS, Events=["s3:ObjectRemoved:*", "s3:ObjectCreated:*"])]}
    configuration, changed = with_queue_configuration(current, OURS)
    assert changed is False
    assert configuration == {"QueueConfigurations": current["QueueConfigurations"]}


def test_a_configuration_with_another_id_is_not_ours_even_on_the_same_queue():
    current = {"QueueConfigurations": [dict(OURS, Id="someone-else")]}
    configuration, changed = with_queue_configuration(current, OURS)
    assert changed is True
    assert [entry["Id"] for entry in configuration["QueueConfigurations"]] == ["someone-else", "backbeat-crr"]


def test_filter_rules_are_sent_back_with_lower_case_names_and_empty_filters_dropped():
    current = {"QueueConfigurations": [dict(FOREIGN_QUEUE),
                                       dict(FOREIGN_QUEUE, Id="empty", Filter={"Key": {"FilterRules": []}})]}
    configuration, _ = with_queue_configuration(current, OURS)
    kept, empty = configuration["QueueConfigurations"][:2]
    assert kept["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}}
    assert "Filter" not in empty


def test_normalised_form_ignores_event_order_duplicates_and_filter_rule_order_and_case():
    created, removed = "s3:ObjectCreated:*", "s3:ObjectRemoved:*"
    left = {"Id": "a", "QueueArn": QUEUE, "Events": [removed, created, created],
            "Filter": {"Key": {"FilterRules": [{"Name": "Suffix", "Value": ".txt"},
                                               {"Name": "Prefix", "Value": "l/"}]}}}
    right = {"Id": "a", "QueueArn": QUEUE, "Events": [created, removed],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "l/"},
                                                {"Name": "suffix", "Value": ".txt"}]}}}
    assert normalize_queue_configuration(left) == normalize_queue_configuration(right)
    assert normalize_queue_configuration(None) is None


def test_removal_takes_ours_and_keeps_the_rest():
    current = others()
    current["QueueConfigurations"].insert(0, dict(OURS))
    configuration, changed = without_queue_configuration(current, "backbeat-crr")
    assert changed is True
    assert configuration["QueueConfigurations"] == [FOREIGN_QUEUE | {
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}}}]
    assert configuration["TopicConfigurations"] == [TOPIC]
    assert configuration["EventBridgeConfiguration"] == {}


def test_removing_the_only_queue_configuration_leaves_no_empty_list():
    assert without_queue_configuration({"QueueConfigurations": [OURS]}, "backbeat-crr") == ({}, True)


def test_removal_without_ours_is_no_change():
    configuration, changed = without_queue_configuration(others(), "backbeat-crr")
    assert changed is False
    assert find_queue_configuration(configuration, "audit")["QueueArn"] == OTHER_QUEUE
    assert without_queue_configuration(None, "backbeat-crr") == ({}, False)


# -------------------------------------------------------------------------------------------- queue policy


def test_the_statement_lets_s3_send_for_this_bucket_only():
    statement = send_message_statement(QUEUE, "src")
    assert statement == {
        "Sid": "backbeat-crr-src", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": QUEUE,
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"}},
    }


def test_the_source_arn_takes_the_partition_of_the_queue():
    statement = send_message_statement("arn:aws-cn:sqs:cn-north-1:111111111111:q", "src")
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws-cn:s3:::src"


def test_a_queue_without_policy_gets_a_new_one():
    for missing in (None, ""):
        document, changed = with_statement(missing, send_message_statement(QUEUE, "src"))
        assert changed is True
        assert document == {"Version": "2012-10-17", "Statement": [send_message_statement(QUEUE, "src")]}


def test_statements_of_other_buckets_are_kept():
    other = send_message_statement(QUEUE, "another-bucket")
    policy = json.dumps({"Version": "2012-10-17", "Id": "shared", "Statement": [other]})
    document, changed = with_statement(policy, send_message_statement(QUEUE, "src"))
    assert changed is True
    assert document["Id"] == "shared"
    assert document["Statement"] == [other, send_message_statement(QUEUE, "src")]


def test_an_equal_statement_in_the_server_shape_is_no_change():
    stored = send_message_statement(QUEUE, "src")
    stored["Action"] = ["SQS:SendMessage"]
    stored["Resource"] = [QUEUE]
    stored["Condition"] = {"ArnLike": {"aws:SourceArn": ["arn:aws:s3:::src"]}}
    policy = json.dumps({"Version": "2012-10-17", "Statement": stored})  # one statement, not a list
    document, changed = with_statement(policy, send_message_statement(QUEUE, "src"))
    assert changed is False and document["Statement"] == stored


def test_a_different_statement_under_our_sid_is_replaced():
    stale = dict(send_message_statement(OTHER_QUEUE, "src"))
    document, changed = with_statement({"Statement": [stale]}, send_message_statement(QUEUE, "src"))
    assert changed is True and document["Statement"] == [send_message_statement(QUEUE, "src")]


def test_removal_keeps_other_buckets_statements():
    other = send_message_statement(QUEUE, "another-bucket")
    policy = {"Version": "2012-10-17", "Statement": [send_message_statement(QUEUE, "src"), other]}
    document, changed = without_statement(policy, statement_id("src"))
    assert changed is True and document == {"Version": "2012-10-17", "Statement": [other]}


def test_removing_the_last_statement_removes_the_policy():
    document, changed = without_statement({"Statement": [send_message_statement(QUEUE, "src")]}, "backbeat-crr-src")
    assert (document, changed) == (None, True)
    assert policy_attribute(document) == ""


def test_removal_without_our_statement_is_no_change():
    assert without_statement(None, "backbeat-crr-src") == (None, False)
    policy = {"Statement": [send_message_statement(QUEUE, "other")]}
    assert without_statement(policy, "backbeat-crr-src") == (policy, False)


def test_an_unreadable_policy_is_an_error_naming_it():
    with pytest.raises(NotificationError, match="queue policy: not valid JSON"):
        with_statement("{not json", send_message_statement(QUEUE, "src"))


# -------------------------------------------------------------------------------------------- validation


def test_events_must_start_with_s3():
    assert error_of(validate_events, ["s3:ObjectCreated:*", "ObjectRemoved:*"]).startswith(
        "events: 'ObjectRemoved:*' is not an S3 event type; each must start with 's3:'")
    assert error_of(validate_events, ["s3:"]).startswith("events:")
    assert error_of(validate_events, []).startswith("events: give at least one")


def test_duplicate_events_are_dropped_in_order():
    assert validate_events(["s3:ObjectRemoved:*", "s3:ObjectCreated:*", "s3:ObjectRemoved:*"]) == \
        ["s3:ObjectRemoved:*", "s3:ObjectCreated:*"]


def test_queue_must_be_a_standard_queue_name():
    assert validate_queue_name("crr-events_1") == "crr-events_1"
    assert error_of(validate_queue_name, "events.fifo").startswith("queue: 'events.fifo' is a FIFO queue")
    assert error_of(validate_queue_name, QUEUE).startswith("queue: %r is not an SQS queue name" % QUEUE)
    assert error_of(validate_queue_name, "x" * 81).startswith("queue:")


def test_bucket_and_id_are_checked():
    assert error_of(validate_bucket, "arn:aws:s3:::src").startswith("bucket:")
    assert error_of(validate_id, "").startswith("id:")
    assert error_of(validate_id, "i" * 256).startswith("id:")


# ------------------------------------------------------------ crr_bucket_notification: check mode's queue ARN

class _STS:
    def __init__(self, arn=None, error=None):
        self.arn, self.error = arn, error

    def get_caller_identity(self):
        if self.error:
            raise self.error
        return {"Arn": self.arn}


class _SQS:
    class meta:  # noqa: N801 (boto3's client.meta)
        region_name = "eu-west-1"


def test_check_mode_queue_arn_is_the_callers_account_in_the_sqs_region():
    sts = _STS("arn:aws-cn:sts::111111111111:assumed-role/admin/session")
    assert predicted_queue_arn(sts, _SQS, "q") == "arn:aws-cn:sqs:eu-west-1:111111111111:q"


def test_check_mode_queue_arn_is_none_without_sts():
    error = botocore.exceptions.ClientError({"Error": {"Code": "InvalidAction"}}, "GetCallerIdentity")
    assert predicted_queue_arn(_STS(error=error), _SQS, "q") is None
