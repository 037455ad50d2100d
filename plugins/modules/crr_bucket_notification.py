#!/usr/bin/python
# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: crr_bucket_notification
short_description: S3 event notifications of a bucket sent to an SQS queue, for the replication worker
version_added: 0.1.0
description:
  - Makes sure an SQS queue exists, that its policy lets S3 send it the events of the bucket, and that the bucket's
    notification configuration sends the given events to it. The replication worker reads that queue
    (C(extensions.replication.source.notificationQueueUrl) in its config) to replicate within seconds instead of
    waiting for its next scan.
  - Only what this module owns is changed. In the bucket's notification configuration that is the queue
    configuration identified by O(id); topic, Lambda and EventBridge configurations and queue configurations with
    another Id are kept as they are. In the queue's policy it is the statement with Sid C(backbeat-crr-<bucket>),
    which allows the service principal C(s3.amazonaws.com) to C(sqs:SendMessage) when C(aws:SourceArn) is the
    bucket; statements of other buckets or other owners are kept, so one queue can serve several buckets.
  - Events, filter rules and policy statements are compared in a normalised form (order-insensitive), so a
    second run with the same options changes nothing.
  - O(state=absent) removes the queue configuration and the policy statement. The queue itself is never deleted,
    because other buckets or consumers may share it; delete it yourself when nothing uses it any more.
extends_documentation_fragment:
  - backbeat.crr.connection
options:
  bucket:
    description:
      - Name of the bucket whose events are sent. With O(state=present) it must exist (for example created by
        M(backbeat.crr.crr_bucket_replication)).
    type: str
    required: true
  queue:
    description:
      - Name of the SQS queue (not its URL or ARN), created in O(region) when missing.
      - A standard queue; S3 event notifications cannot target FIFO queues.
    type: str
    required: true
  events:
    description:
      - S3 event types sent to the queue, each starting with C(s3:). Their order does not matter.
    type: list
    elements: str
    default: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
  id:
    description:
      - Id of the queue configuration in the bucket's notification configuration; the configuration with this Id
        is the one the module manages.
    type: str
    default: backbeat-crr
  state:
    description:
      - V(present) ensures the queue, its policy statement and the queue configuration.
      - V(absent) removes the queue configuration and the policy statement, and keeps the queue.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode (the queue configuration with O(id) before and after).
    In check mode nothing is created; when the queue does not exist yet, RV(queue_url) is empty and RV(queue_arn)
    (and the diff's C(QueueArn)) the ARN the queue will have, from the account STS C(GetCallerIdentity) answers
    (asked at the IAM endpoint, see O(iam_endpoint_url)); when STS does not answer, RV(queue_arn) is empty and
    the diff's C(QueueArn) null.
  - The SQS client uses O(endpoint_url) and the credentials of the S3 client, as the worker does.
  - S3 sends a C(s3:TestEvent) message to the queue when the configuration is written; the worker ignores it.
author:
  - backbeat.crr contributors (@backbeat-crr)
"""

EXAMPLES = r"""
- name: Send the source bucket's object events to the worker's queue
  backbeat.crr.crr_bucket_notification:
    endpoint_url: http://cloudserver:8000
    access_key: "{{ s3_access_key }}"
    secret_key: "{{ s3_secret_key }}"
    bucket: source-bucket
    queue: backbeat-crr-notifications
  register: notification

- name: Only new objects, under an own configuration id
  backbeat.crr.crr_bucket_notification:
    bucket: source-bucket
    queue: backbeat-crr-notifications
    id: replication-puts
    events: ["s3:ObjectCreated:*"]

- name: Stop sending events (the queue stays)
  backbeat.crr.crr_bucket_notification:
    bucket: source-bucket
    queue: backbeat-crr-notifications
    state: absent
"""

RETURN = r"""
queue_url:
  description:
    - URL of the queue, what the worker's C(notificationQueueUrl) takes.
    - Empty when the queue does not exist (in check mode before it is created, or with O(state=absent)).
  returned: always
  type: str
  sample: https://sqs.us-east-1.amazonaws.com/123456789012/backbeat-crr-notifications
queue_arn:
  description:
    - ARN of the queue; empty when there is no queue (O(state=absent)).
    - In check mode, for a queue still to create, the ARN it will have (empty when the account is unknown).
  returned: always
  type: str
  sample: arn:aws:sqs:us-east-1:123456789012:backbeat-crr-notifications
queue_configuration:
  description:
    - The bucket's queue configuration with O(id) after the task, normalised (events sorted); V(null) when there is
      none.
  returned: always
  type: dict
  sample:
    Id: backbeat-crr
    QueueArn: arn:aws:sqs:us-east-1:123456789012:backbeat-crr-notifications
    Events: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
"""

from ansible_collections.backbeat.crr.plugins.module_utils import notification  # noqa: E402
from ansible_collections.backbeat.crr.plugins.module_utils.arn import parse_arn  # noqa: E402
from ansible_collections.backbeat.crr.plugins.module_utils.errors import AWS_ERRORS, BUCKET_NOT_FOUND, call  # noqa: E402
from ansible_collections.backbeat.crr.plugins.module_utils.modules import CrrModule, ModuleFailure  # noqa: E402

# GetQueueUrl's answer for a missing queue: the query-protocol code, and the JSON-protocol one.
QUEUE_NOT_FOUND = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


ARGUMENT_SPEC = dict(
    bucket=dict(type="str", required=True),
    queue=dict(type="str", required=True),
    events=dict(type="list", elements="str", default=list(notification.DEFAULT_EVENTS)),
    id=dict(type="str", default=notification.DEFAULT_ID),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def validated_params(params):
    """bucket, queue, events and id checked before any call (raises ModuleFailure naming the option)."""
    try:
        return dict(
            bucket=notification.validate_bucket(params["bucket"]),
            queue=notification.validate_queue_name(params["queue"]),
            events=notification.validate_events(params["events"]),
            id=notification.validate_id(params["id"]),
        )
    except notification.NotificationError as exc:
        raise ModuleFailure(str(exc)) from None


# ----------------------------------------------------------------------------------------------- queue


def find_queue(sqs, name):
    """The queue's URL, or None when it does not exist."""
    answer = call(sqs, "GetQueueUrl", name, none_for=QUEUE_NOT_FOUND, QueueName=name)
    return None if answer is None else answer["QueueUrl"]


def create_queue(module, sqs, name):
    """The URL of the new queue; None in check mode, where nothing is created."""
    if module.check_mode:
        return None
    return call(sqs, "CreateQueue", name, QueueName=name)["QueueUrl"]


def predicted_queue_arn(sts, sqs, name):
    """The ARN a queue about to be created will have (check mode), or None when the account is unknown.

    Best effort, like crr_role's predicted role ARN: an endpoint without STS gives None.
    """
    try:
        caller = parse_arn(sts.get_caller_identity()["Arn"])
    except AWS_ERRORS:
        return None
    if not caller or not caller["account_id"]:
        return None
    return "arn:%s:sqs:%s:%s:%s" % (caller["partition"], sqs.meta.region_name, caller["account_id"], name)


def queue_attributes(sqs, name, url):
    """(ARN, policy document or None) of the queue."""
    attributes = call(sqs, "GetQueueAttributes", name, QueueUrl=url,
                      AttributeNames=["QueueArn", "Policy"]).get("Attributes", {})
    try:
        return attributes["QueueArn"], notification.load_queue_policy(attributes.get("Policy"))
    except notification.NotificationError as exc:
        raise ModuleFailure("queue %s: %s" % (name, exc)) from None


def set_policy(module, sqs, name, url, document):
    """Write the queue's policy (None removes it); nothing in check mode."""
    if not module.check_mode:
        call(sqs, "SetQueueAttributes", name, QueueUrl=url,
             Attributes={"Policy": notification.policy_attribute(document)})


def allow_bucket(module, sqs, name, url, queue_arn, policy, bucket):
    """Our statement in the queue's policy; returns changed."""
    statement = notification.send_message_statement(queue_arn, bucket)
    updated, changed = notification.with_statement(policy, statement)
    if changed:
        set_policy(module, sqs, name, url, updated)
    return changed


def disallow_bucket(module, sqs, name, url, policy, bucket):
    """Our statement out of the queue's policy; returns changed."""
    updated, changed = notification.without_statement(policy, notification.statement_id(bucket))
    if changed:
        set_policy(module, sqs, name, url, updated)
    return changed


# ----------------------------------------------------------------------------------------------- bucket


def get_notifications(s3, bucket):
    """The bucket's NotificationConfiguration, or None when the bucket does not exist."""
    answer = call(s3, "GetBucketNotificationConfiguration", bucket, none_for=BUCKET_NOT_FOUND, Bucket=bucket)
    if answer is not None:
        answer.pop("ResponseMetadata", None)
    return answer


def put_notifications(module, s3, bucket, configuration):
    if not module.check_mode:
        call(s3, "PutBucketNotificationConfiguration", bucket, Bucket=bucket,
             NotificationConfiguration=configuration)


# ------------------------------------------------------------------------------------------------- main


def ensure_present(module, s3, sqs, options):
    """(changed, queue_url, queue_arn, before, after) with queue, policy statement and queue configuration in place."""
    bucket, name = options["bucket"], options["queue"]
    current = get_notifications(s3, bucket)
    if current is None and not module.check_mode:
        raise ModuleFailure("bucket %s does not exist; create it first (backbeat.crr.crr_bucket_replication)" % bucket)
    before = notification.find_queue_configuration(current, options["id"])

    changed = False
    url = find_queue(sqs, name)
    if url is None:
        url = create_queue(module, sqs, name)
        changed = True
    if url is None:  # check mode, queue still to create: it would get the statement, the bucket the configuration
        queue_arn = predicted_queue_arn(module.client("sts"), sqs, name)
        desired = notification.queue_configuration(options["id"], queue_arn, options["events"])
        return True, "", queue_arn or "", before, desired

    queue_arn, policy = queue_attributes(sqs, name, url)
    changed |= allow_bucket(module, sqs, name, url, queue_arn, policy, bucket)
    desired = notification.queue_configuration(options["id"], queue_arn, options["events"])
    configuration, differs = notification.with_queue_configuration(current, desired)
    if differs:
        put_notifications(module, s3, bucket, configuration)
    return changed or differs, url, queue_arn, before, desired if differs else before


def ensure_absent(module, s3, sqs, options):
    """(changed, queue_url, queue_arn, before, None) with the queue configuration and the statement removed."""
    bucket, name = options["bucket"], options["queue"]
    changed = False
    current = get_notifications(s3, bucket)
    before = notification.find_queue_configuration(current, options["id"])
    if current is not None:
        configuration, changed = notification.without_queue_configuration(current, options["id"])
        if changed:
            put_notifications(module, s3, bucket, configuration)

    url = find_queue(sqs, name)
    if url is None:
        return changed, "", "", before, None
    queue_arn, policy = queue_attributes(sqs, name, url)
    changed |= disallow_bucket(module, sqs, name, url, policy, bucket)
    return changed, url, queue_arn, before, None


def apply(module):
    """The bucket's queue configuration and the queue as the options say; returns the module's result."""
    options = validated_params(module.params)
    s3 = module.client("s3")
    sqs = module.client("sqs")
    if module.params["state"] == "present":
        changed, url, queue_arn, before, after = ensure_present(module, s3, sqs, options)
    else:
        changed, url, queue_arn, before, after = ensure_absent(module, s3, sqs, options)
    after = notification.normalize_queue_configuration(after)
    result = dict(changed=changed, queue_url=url, queue_arn=queue_arn, queue_configuration=after)
    if module.diff:
        result["diff"] = {"before": notification.normalize_queue_configuration(before) or {}, "after": after or {}}
    return result


def main():
    CrrModule(ARGUMENT_SPEC).run(apply)


if __name__ == "__main__":
    main()
