"""crr_bucket_notification against the sandbox's moto source (S3 + SQS), driven through ansible-playbook.

moto delivers S3 event notifications to its own SQS queues, so the whole path is real: the queue the module
creates receives the event of an object put on the bucket.
"""

from __future__ import annotations

import json
import time
import uuid
from functools import partial

import boto3
import pytest
from playbook import changed_by_step, module_task, play, run_playbook
from playbook import four_steps as module_four_steps

pytestmark = pytest.mark.integration

MODULE = "backbeat.crr.crr_bucket_notification"
task = partial(module_task, MODULE)
four_steps = partial(module_four_steps, MODULE)

DEFAULT_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


# ------------------------------------------------------------------------------------------ harness


def aws(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def new_bucket(url):
    bucket = unique("src")
    aws("s3", url).create_bucket(Bucket=bucket)
    return bucket


def queue_url(url, name):
    """The queue's URL, or None when it does not exist."""
    try:
        return aws("sqs", url).get_queue_url(QueueName=name)["QueueUrl"]
    except aws("sqs", url).exceptions.QueueDoesNotExist:
        return None


def queue_policy(url, name):
    attributes = aws("sqs", url).get_queue_attributes(QueueUrl=queue_url(url, name), AttributeNames=["Policy"])
    policy = attributes.get("Attributes", {}).get("Policy")
    return json.loads(policy) if policy else None


def sids(url, name):
    return sorted(statement["Sid"] for statement in (queue_policy(url, name) or {}).get("Statement", []))


def notifications(url, bucket):
    answer = aws("s3", url).get_bucket_notification_configuration(Bucket=bucket)
    answer.pop("ResponseMetadata")
    return answer


def queue_ids(url, bucket):
    return [entry["Id"] for entry in notifications(url, bucket).get("QueueConfigurations", [])]


def event_records(url, name, timeout_s=10):
    """S3 event records received from the queue within timeout_s (test events skipped)."""
    sqs, records, deadline = aws("sqs", url), [], time.monotonic() + timeout_s
    while not records and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=queue_url(url, name), MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            records += json.loads(message["Body"]).get("Records", [])
    return records


# ------------------------------------------------------------------------------------------- scenarios


def test_check_mode_on_a_fresh_bucket_changes_nothing_and_creates_no_queue(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(play(task("check", url, bucket=bucket, queue=queue)), check=True, diff=True)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = run.result("check")
    assert result["changed"] is True
    assert result["queue_url"] == ""
    assert result["diff"]["before"] == {}
    assert sorted(result["diff"]["after"]["Events"]) == DEFAULT_EVENTS
    assert queue_url(url, queue) is None
    assert notifications(url, bucket) == {}


def test_check_mode_gives_the_arn_the_new_queue_will_have(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(play(task("check", url, bucket=bucket, queue=queue, check=True),
                            task("apply", url, bucket=bucket, queue=queue)), diff=True)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check, apply = run.result("check"), run.result("apply")
    assert check["queue_arn"] == apply["queue_arn"] == "arn:aws:sqs:us-east-1:%s:%s" % (sandbox.source.account_id,
                                                                                           queue)
    assert check["diff"]["after"] == apply["diff"]["after"]
    assert check["diff"]["after"]["QueueArn"] == apply["queue_arn"]


def test_queue_policy_and_configuration_are_created_once_and_deliver_object_events(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(four_steps(url, bucket=bucket, queue=queue))
    assert changed_by_step(run) == [True, True, False, False]

    result = run.result("apply again")
    assert result["queue_url"] == queue_url(url, queue)
    assert result["queue_arn"] == "arn:aws:sqs:us-east-1:%s:%s" % (sandbox.source.account_id, queue)
    assert result["queue_configuration"] == {"Id": "backbeat-crr", "QueueArn": result["queue_arn"],
                                             "Events": DEFAULT_EVENTS}
    [statement] = queue_policy(url, queue)["Statement"]
    assert statement["Sid"] == "backbeat-crr-" + bucket
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::" + bucket}}

    aws("s3", url).put_object(Bucket=bucket, Key="hello.txt", Body=b"hi")
    records = event_records(url, queue)
    assert [(r["eventName"], r["s3"]["bucket"]["name"], r["s3"]["object"]["key"]) for r in records] == \
        [("ObjectCreated:Put", bucket, "hello.txt")]
    assert records[0]["s3"]["configurationId"] == "backbeat-crr"


def test_events_in_another_order_are_no_change(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(play(task("apply", url, bucket=bucket, queue=queue),
                            task("reordered", url, bucket=bucket, queue=queue, events=DEFAULT_EVENTS[::-1])))
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("reordered")["changed"] is False


def test_changed_events_are_applied_with_a_diff(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    assert run_playbook(play(task("setup", url, bucket=bucket, queue=queue))).rc == 0
    run = run_playbook(play(task("puts only", url, bucket=bucket, queue=queue, events=["s3:ObjectCreated:Put"])),
                       diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    result = run.result("puts only")
    assert result["changed"] is True
    assert (result["diff"]["before"]["Events"], result["diff"]["after"]["Events"]) == \
        (DEFAULT_EVENTS, ["s3:ObjectCreated:Put"])
    assert notifications(url, bucket)["QueueConfigurations"][0]["Events"] == ["s3:ObjectCreated:Put"]


def test_a_foreign_queue_configuration_with_another_id_is_kept(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    sqs = aws("sqs", url)
    audit_url = sqs.create_queue(QueueName=unique("audit"))["QueueUrl"]
    audit_arn = sqs.get_queue_attributes(QueueUrl=audit_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    audit = {"Id": "audit", "QueueArn": audit_arn, "Events": ["s3:ObjectCreated:Put"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}}}
    aws("s3", url).put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [audit]})

    run = run_playbook(four_steps(url, bucket=bucket, queue=queue))
    assert changed_by_step(run) == [True, True, False, False]
    configurations = notifications(url, bucket)["QueueConfigurations"]
    assert [entry["Id"] for entry in configurations] == ["audit", "backbeat-crr"]
    assert configurations[0] == audit


def test_absent_removes_ours_and_keeps_the_queue_and_the_rest(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    other = new_bucket(url)
    setup = run_playbook(play(task("setup", url, bucket=bucket, queue=queue),
                              task("other bucket, same queue", url, bucket=other, queue=queue),
                              task("foreign id", url, bucket=bucket, queue=queue, id="audit")))
    assert setup.rc == 0, setup.stdout[-3000:]
    assert sids(url, queue) == sorted(["backbeat-crr-" + bucket, "backbeat-crr-" + other])

    run = run_playbook(four_steps(url, bucket=bucket, queue=queue, state="absent"))
    assert changed_by_step(run) == [True, True, False, False]
    assert run.result("apply again")["queue_url"] == queue_url(url, queue)  # the queue stays
    assert queue_ids(url, bucket) == ["audit"]
    assert queue_ids(url, other) == ["backbeat-crr"]
    assert sids(url, queue) == ["backbeat-crr-" + other]


def test_absent_of_the_last_bucket_removes_the_policy_and_keeps_the_queue(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(play(task("setup", url, bucket=bucket, queue=queue),
                            task("remove", url, bucket=bucket, queue=queue, state="absent")))
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("remove")["changed"] is True
    assert notifications(url, bucket) == {}
    assert queue_url(url, queue) is not None and queue_policy(url, queue) is None


def test_a_missing_bucket_is_an_error_naming_it(sandbox):
    bucket, queue = unique("src"), unique("crr")
    run = run_playbook(play(task("missing", sandbox.source.url, bucket=bucket, queue=queue)))
    assert run.rc != 0
    assert run.result("missing")["msg"].startswith("bucket %s does not exist" % bucket)


def test_bad_events_fail_naming_the_option_before_any_call(sandbox):
    url, bucket, queue = sandbox.source.url, new_bucket(sandbox.source.url), unique("crr")
    run = run_playbook(play(task("bad", url, bucket=bucket, queue=queue, events=["s3:ObjectCreated:*", "Put"])))
    assert run.rc != 0
    assert run.result("bad")["msg"].startswith("events: 'Put' is not an S3 event type; each must start with 's3:'")
    assert queue_url(url, queue) is None
    assert notifications(url, bucket) == {}
