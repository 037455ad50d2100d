"""crr_bucket_replication edge cases moto cannot produce (stubbed S3 client and module)."""

from __future__ import annotations

import botocore.exceptions
import pytest
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure
from ansible_collections.backbeat.crr.plugins.modules import crr_bucket_replication as module_under_test


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.check_mode = check_mode
        self.params = {"location": None, "region": "us-east-1", "create_bucket": True, **params}

    def region(self):
        return self.params["region"]


def client_error(code, operation):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, operation)


class StubS3:
    """Records calls; versioning stays as configured (a bucket that cannot be versioned)."""

    def __init__(self, versioning=None, head_error=None, create_error=None):
        self.versioning = versioning
        self.head_error = head_error
        self.create_error = create_error
        self.calls = []

    def head_bucket(self, Bucket):
        self.calls.append("head_bucket")
        if self.head_error:
            raise self.head_error
        return {}  # boto3 answers every call with a dict

    def create_bucket(self, **kwargs):
        self.calls.append(("create_bucket", kwargs))
        if self.create_error:
            raise self.create_error

    def get_bucket_versioning(self, Bucket):
        return {"Status": self.versioning} if self.versioning else {}

    def put_bucket_versioning(self, Bucket, VersioningConfiguration):
        self.calls.append("put_bucket_versioning")


def test_bucket_that_stays_unversioned_is_an_error():
    with pytest.raises(ModuleFailure, match="bucket b cannot be versioned"):
        module_under_test.enable_versioning(FakeModule(), StubS3(versioning="Suspended"), "b", "Suspended")


def test_enabled_versioning_makes_no_call():
    s3 = StubS3(versioning="Enabled")
    assert module_under_test.enable_versioning(FakeModule(), s3, "b", "Enabled") is False
    assert s3.calls == []


def test_check_mode_does_not_enable_versioning():
    s3 = StubS3()
    assert module_under_test.enable_versioning(FakeModule(check_mode=True), s3, "b", None) is True
    assert s3.calls == []


def test_bucket_of_another_account_is_an_error_naming_the_call():
    s3 = StubS3(head_error=client_error("403", "HeadBucket"))
    with pytest.raises(ModuleFailure, match="HeadBucket on b failed: 403"):
        module_under_test.bucket_exists(s3, "b")


def test_existing_and_missing_buckets():
    assert module_under_test.bucket_exists(StubS3(), "b") is True
    missing = StubS3(head_error=client_error("404", "HeadBucket"))
    assert module_under_test.bucket_exists(missing, "b") is False


def test_unreachable_endpoint_is_a_failure_naming_the_call_not_a_traceback():
    down = botocore.exceptions.EndpointConnectionError(endpoint_url="http://cloudserver:8000/b")
    with pytest.raises(ModuleFailure) as failed:
        module_under_test.bucket_exists(StubS3(head_error=down), "b")
    expected = 'HeadBucket on b failed: Could not connect to the endpoint URL: "http://cloudserver:8000/b"'
    assert str(failed.value) == expected


def test_new_bucket_outside_us_east_1_gets_a_location_constraint():
    s3 = StubS3()
    module_under_test.create_bucket(FakeModule(region="eu-west-1"), s3, "b")
    expected = {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}
    assert s3.calls == [("create_bucket", expected)]


def test_location_option_wins_over_region():
    s3 = StubS3()
    module_under_test.create_bucket(FakeModule(location="zenko-loc"), s3, "b")
    assert s3.calls[0][1]["CreateBucketConfiguration"] == {"LocationConstraint": "zenko-loc"}


def test_bucket_already_owned_by_you_is_not_an_error():
    s3 = StubS3(create_error=client_error("BucketAlreadyOwnedByYou", "CreateBucket"))
    assert module_under_test.create_bucket(FakeModule(), s3, "b") is True


def test_empty_prefix_next_to_a_filter_is_not_a_second_prefix():
    params = {"rules": [{"prefix": "", "filter": {"prefix": "a/", "tags": None}, "priority": 1}]}
    assert module_under_test.task_rules(params) == [{"prefix": None, "filter": {"prefix": "a/"}, "priority": 1}]


def test_site_type_option_applies_to_every_storage_class_and_the_default():
    params = {"site_type": "scality", "cloudserver_config": None}
    types = module_under_test.known_site_types(params, [{"storage_class": "a,b"}, {"storage_class": None}])
    assert types == {"a": "scality", "b": "scality", "": "scality"}
