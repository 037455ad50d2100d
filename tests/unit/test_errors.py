"""errors.call: any boto3 client's failure becomes one module failure naming the call, never a traceback."""

from __future__ import annotations

import socket

import boto3
import botocore.config
import botocore.exceptions
import pytest
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure, call
from botocore.stub import Stubber


def closed_port():
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_client(endpoint_url="http://127.0.0.1:1"):
    """A real botocore S3 client, stubbed unless a test wants the request to reach endpoint_url."""
    return boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1").client(
        "s3", endpoint_url=endpoint_url,
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))


def test_answer_is_returned_for_an_api_operation_name():
    s3 = s3_client()
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_versioning", {"Status": "Enabled"}, {"Bucket": "b"})
        assert call(s3, "GetBucketVersioning", "b", Bucket="b")["Status"] == "Enabled"


def test_client_error_names_call_entity_and_code():
    s3 = s3_client()
    with Stubber(s3) as stub:
        stub.add_client_error("put_bucket_replication", "AccessDenied", "Access Denied")
        with pytest.raises(ModuleFailure) as failed:
            call(s3, "PutBucketReplication", "bucket 'b'", Bucket="b",
                 ReplicationConfiguration={"Role": "r", "Rules": []})
    result = dict(failed.value.result, msg=failed.value.msg)
    assert result["msg"] == ("PutBucketReplication on bucket 'b' failed: AccessDenied: Access Denied"
                             " (the credentials lack permission for this call)")
    assert result["error_code"] == "AccessDenied"


def test_code_in_none_for_is_an_answer_not_a_failure():
    s3 = s3_client()
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", "404", "Not Found")
        assert call(s3, "HeadBucket", "b", none_for=("404", "NoSuchBucket"), Bucket="b") is None


def test_unreachable_endpoint_names_call_and_endpoint_without_traceback():
    endpoint = "http://127.0.0.1:%d" % closed_port()
    with pytest.raises(ModuleFailure) as failed:
        call(s3_client(endpoint), "HeadBucket", "b", none_for=("404",), Bucket="b")
    msg = failed.value.msg
    assert msg == 'HeadBucket on b failed: Could not connect to the endpoint URL: "%s/b"' % endpoint


@pytest.mark.parametrize("error", [
    botocore.exceptions.ConnectionClosedError(endpoint_url="http://iam:8600/"),
    botocore.exceptions.ReadTimeoutError(endpoint_url="http://iam:8600/"),
    botocore.exceptions.ConnectTimeoutError(endpoint_url="http://iam:8600/"),
])
def test_connection_errors_of_any_client_fail_naming_the_method_and_endpoint(error):
    class IAM:
        def get_role(self, RoleName):
            raise error

    with pytest.raises(ModuleFailure) as failed:
        call(IAM(), "get_role", "role 'r'", RoleName="r")
    msg = failed.value.msg
    assert msg.startswith("get_role on role 'r' failed: ") and 'endpoint URL: "http://iam:8600/"' in msg
