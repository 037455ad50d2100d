"""Both moto servers answer S3 and IAM, each for its own account."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest


def _client(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint.url, region_name=endpoint.region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.mark.parametrize("name", ["source", "target"])
def test_endpoint_serves_s3(sandbox, name):
    s3 = _client(sandbox.endpoints[name], "s3")
    bucket = "sbx-%s" % uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hello"


def test_endpoints_are_separate_servers(sandbox):
    bucket = "only-on-source-%s" % uuid.uuid4().hex[:8]
    _client(sandbox.source, "s3").create_bucket(Bucket=bucket)
    names = [b["Name"] for b in _client(sandbox.target, "s3").list_buckets()["Buckets"]]
    assert bucket not in names


def test_endpoints_report_different_account_ids_in_arns(sandbox):
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "backbeat"}, "Action": "sts:AssumeRole"}]})
    arns = {}
    for name in ("source", "target"):
        iam = _client(sandbox.endpoints[name], "iam")
        role = iam.create_role(RoleName="sbx-%s" % uuid.uuid4().hex[:8], AssumeRolePolicyDocument=trust)
        arns[name] = role["Role"]["Arn"]
    assert arns["source"].startswith("arn:aws:iam::%s:role/" % sandbox.source.account_id)
    assert arns["target"].startswith("arn:aws:iam::%s:role/" % sandbox.target.account_id)
    assert sandbox.source.account_id != sandbox.target.account_id
