# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""S3 event notifications to an SQS queue: our entry in a bucket's configuration and in the queue's policy.

Pure functions, no server calls. A bucket has one NotificationConfiguration and a queue one policy, both
shared with whoever else configured them, so each function changes only the part identified as ours (a
queue configuration by its Id, a policy statement by its Sid) and returns everything else as it was.
Comparisons use a normalised form, so what a server hands back in its own shape is not a change.
"""

from __future__ import annotations

import copy
import json
import re

from ansible_collections.backbeat.crr.plugins.module_utils.arn import parse_arn
from ansible_collections.backbeat.crr.plugins.module_utils.policy import (
    GENERATED_POLICY_VERSION,
    PolicyError,
    load_document,
    normalize_policy,
)
from ansible_collections.backbeat.crr.plugins.module_utils.policy import validate_bucket as validate_bucket_name

DEFAULT_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
DEFAULT_ID = "backbeat-crr"
S3_SERVICE_PRINCIPAL = "s3.amazonaws.com"
SID_PREFIX = "backbeat-crr-"

# The keys of a NotificationConfiguration that PutBucketNotificationConfiguration takes back.
_CONFIGURATION_LISTS = ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations")
_EVENT_BRIDGE = "EventBridgeConfiguration"
# SQS queue names; S3 cannot notify FIFO queues, so '.fifo' is refused separately.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_MAX_ID = 255


class NotificationError(ValueError):
    """Invalid task input; the message starts with the option name and says the fix."""


# ------------------------------------------------------------------------------------------- validation


def validate_bucket(value):
    try:
        return validate_bucket_name(value, "bucket")
    except PolicyError as exc:
        raise NotificationError(str(exc)) from None


def validate_queue_name(value):
    """The SQS queue name; FIFO queues are refused because S3 cannot send event notifications to them."""
    if isinstance(value, str) and value.endswith(".fifo"):
        raise NotificationError("queue: %r is a FIFO queue, which S3 event notifications cannot target; "
                                "give a standard queue name" % value)
    if not isinstance(value, str) or not _QUEUE_NAME.match(value):
        raise NotificationError("queue: %r is not an SQS queue name; use 1-80 letters, digits, '-' or '_' "
                                "(the name, not the URL or ARN)" % (value,))
    return value


def validate_events(values):
    """The event types, duplicates dropped in order; each must be an 's3:' event type."""
    if not values:
        raise NotificationError("events: give at least one event type, such as 's3:ObjectCreated:*'")
    events = []
    for value in values:
        if not isinstance(value, str) or not value.startswith("s3:") or len(value) == 3:
            raise NotificationError("events: %r is not an S3 event type; each must start with 's3:', "
                                    "such as 's3:ObjectCreated:*' or 's3:ObjectRemoved:Delete'" % (value,))
        if value not in events:
            events.append(value)
    return events


def validate_id(value):
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise NotificationError("id: give a non-empty identifier of at most %d characters, got %r" % (_MAX_ID, value))
    return value


# ------------------------------------------------------------------------------- bucket configuration


def queue_configuration(config_id, queue_arn, events):
    """The QueueConfiguration that sends the given events of a bucket to the queue."""
    return {"Id": config_id, "QueueArn": queue_arn, "Events": list(events)}


def writable_configuration(configuration):
    """The parts of a GetBucketNotificationConfiguration answer that a Put takes, as a new dict.

    ResponseMetadata and empty lists are dropped; filter rule names are lower-cased (S3 answers 'Prefix' and
    'Suffix' but documents 'prefix' | 'suffix', the only names moto accepts); empty filters are dropped (moto
    rejects them as malformed); EventBridgeConfiguration, an empty dict when enabled, is kept.
    """
    configuration = configuration or {}
    writable = {}
    for key in _CONFIGURATION_LISTS:
        entries = [_writable_entry(entry) for entry in configuration.get(key) or []]
        if entries:
            writable[key] = entries
    if configuration.get(_EVENT_BRIDGE) is not None:
        writable[_EVENT_BRIDGE] = copy.deepcopy(configuration[_EVENT_BRIDGE])
    return writable


def _writable_entry(entry):
    entry = copy.deepcopy(entry)
    rules = _filter_rules(entry.get("Filter"))
    if rules:
        entry["Filter"] = {"Key": {"FilterRules": rules}}
    else:
        entry.pop("Filter", None)
    return entry


def _filter_rules(notification_filter):
    rules = ((notification_filter or {}).get("Key") or {}).get("FilterRules") or []
    return [{"Name": str(rule.get("Name", "")).lower(), "Value": rule.get("Value", "")} for rule in rules]


def normalize_queue_configuration(entry):
    """A canonical form of one QueueConfiguration for comparing: events as a sorted set, filter rules sorted.

    None stays None (no configuration).
    """
    if entry is None:
        return None
    normal = {
        "Id": entry.get("Id"),
        "QueueArn": entry.get("QueueArn"),
        "Events": sorted(set(entry.get("Events") or [])),
    }
    rules = sorted(_filter_rules(entry.get("Filter")), key=lambda rule: (rule["Name"], rule["Value"]))
    if rules:
        normal["Filter"] = {"Key": {"FilterRules": rules}}
    return normal


def find_queue_configuration(configuration, config_id):
    """The queue configuration with this Id, or None."""
    for entry in (configuration or {}).get("QueueConfigurations") or []:
        if entry.get("Id") == config_id:
            return entry
    return None


def with_queue_configuration(configuration, desired):
    """(configuration to put, changed): ours (by desired's Id) replaced in place or appended, the rest kept.

    changed is False when the bucket already has an equal configuration under that Id.
    """
    writable = writable_configuration(configuration)
    current = find_queue_configuration(writable, desired["Id"])
    if normalize_queue_configuration(current) == normalize_queue_configuration(desired):
        return writable, False
    entries = writable.get("QueueConfigurations", [])
    if current is None:
        entries = entries + [copy.deepcopy(desired)]
    else:
        entries = [copy.deepcopy(desired) if entry is current else entry for entry in entries]
    writable["QueueConfigurations"] = entries
    return writable, True


def without_queue_configuration(configuration, config_id):
    """(configuration to put, changed): the queue configuration with this Id removed, the rest kept."""
    writable = writable_configuration(configuration)
    entries = writable.get("QueueConfigurations", [])
    kept = [entry for entry in entries if entry.get("Id") != config_id]
    if len(kept) == len(entries):
        return writable, False
    if kept:
        writable["QueueConfigurations"] = kept
    else:
        writable.pop("QueueConfigurations")
    return writable, True


# ---------------------------------------------------------------------------------------- queue policy


def statement_id(bucket):
    """The Sid of the statement that lets this bucket send to the queue."""
    return SID_PREFIX + bucket


def send_message_statement(queue_arn, bucket):
    """The statement allowing S3, for events of this bucket only, to send messages to the queue."""
    partition = (parse_arn(queue_arn) or {}).get("partition") or "aws"
    return {
        "Sid": statement_id(bucket),
        "Effect": "Allow",
        "Principal": {"Service": S3_SERVICE_PRINCIPAL},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:%s:s3:::%s" % (partition, bucket)}},
    }


def load_queue_policy(policy):
    """The queue's policy as a dict (None or '' when it has none); fails with NotificationError when unreadable."""
    if not policy:
        return None
    try:
        return load_document(policy, "queue policy")
    except PolicyError as exc:
        raise NotificationError("%s; fix or remove the queue's Policy attribute" % exc) from None


def _statements(document):
    statements = (document or {}).get("Statement") or []
    return copy.deepcopy(statements if isinstance(statements, list) else [statements])


def _has_sid(statement, sid):
    return isinstance(statement, dict) and statement.get("Sid") == sid


def _same_statement(left, right):
    return normalize_policy({"Statement": [left]}) == normalize_policy({"Statement": [right]})


def with_statement(policy, statement):
    """(policy document, changed): statement replaces the one with its Sid, or is appended; others kept."""
    document = load_queue_policy(policy)
    statements = _statements(document)
    sid = statement["Sid"]
    current = [s for s in statements if _has_sid(s, sid)]
    if len(current) == 1 and _same_statement(current[0], statement):
        return document, False
    kept = [s for s in statements if not _has_sid(s, sid)]
    updated = copy.deepcopy(document) if document else {"Version": GENERATED_POLICY_VERSION}
    updated["Statement"] = kept + [copy.deepcopy(statement)]
    return updated, True


def without_statement(policy, sid):
    """(policy document, changed): the statement with this Sid removed; None when no statement is left."""
    document = load_queue_policy(policy)
    statements = _statements(document)
    kept = [s for s in statements if not _has_sid(s, sid)]
    if len(kept) == len(statements):
        return document, False
    if not kept:
        return None, True
    updated = copy.deepcopy(document)
    updated["Statement"] = kept
    return updated, True


def policy_attribute(document):
    """The SetQueueAttributes value of a policy document: its JSON, or '' to remove the policy."""
    return "" if document is None else json.dumps(document, separators=(",", ":"))
