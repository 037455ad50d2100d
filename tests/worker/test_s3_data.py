"""The lean S3 client of the data path (crr_worker.s3_data): its signature against botocore's, its key and query
encoding, its replies and errors against a real moto server that checks signatures (IAM auth on)."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from crr_worker.retry import is_retryable, is_site_error
from crr_worker.s3_data import (
    UNSIGNED_PAYLOAD,
    S3Data,
    Signer,
    canonical_query,
    client_error,
    make_data_client,
    object_path,
    put_headers,
)

from sandbox.processes import free_port, spawn, wait_until

KEYS = ["plain", "with space", "a+b", "t~x", "dir/sub/leaf", "ünï/cödé €", "a//b", "%41", "q?x=1&y#z", "semi;colon",
        "star*paren()", "eq=comma,", "caret^pipe|", "'quote\"", "back\\slash", "at@dollar$"]
FIXED = 1_700_000_000  # 2023-11-14T22:13:20Z


def botocore_signature(credentials, method, url, headers, payload_hash, region="us-east-1") -> dict:
    """The headers botocore's S3 signer gives the same request at FIXED."""
    request = AWSRequest(method=method, url=url, headers=dict(headers, **{"X-Amz-Content-SHA256": payload_hash}))
    request.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(FIXED))
    auth = S3SigV4Auth(credentials, "s3", region)
    auth.payload = lambda request: payload_hash
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return dict(request.headers)


@pytest.mark.parametrize("token", [None, "session-token/+="])
@pytest.mark.parametrize("key", KEYS)
def test_the_signature_is_botocores_for_the_same_request(key, token):
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    path = object_path("", "bucket", key)
    query = canonical_query({"versionId": "3/L4kqtJl+cZ=x~_.-", "partNumber": 2})
    headers = {"Range": "bytes=0-9", "x-amz-meta-Color": "  blue   sky ", "Content-MD5": "abc=="}
    ours = Signer(credentials, "eu-west-3").sign("GET", "h:9000", path, query, headers, "UNSIGNED-PAYLOAD", FIXED)
    theirs = botocore_signature(credentials, "GET", "http://h:9000%s?%s" % (path, query), headers,
                                "UNSIGNED-PAYLOAD", "eu-west-3")
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours.get("x-amz-security-token") == theirs.get("X-Amz-Security-Token")


def test_the_signature_matches_the_aws_sigv4_example_of_a_get_object():
    # The example "GET Object" of AWS's S3 documentation, "Signature Calculations for the Authorization Header"
    credentials = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    now = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc).timestamp()
    signed = Signer(credentials, "us-east-1").sign(
        "GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", {"Range": "bytes=0-9"},
        hashlib.sha256(b"").hexdigest(), now)
    assert signed["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_the_derived_key_is_kept_for_the_day_and_made_again_for_another_day_or_secret():
    credentials = SimpleNamespace(secret_key="s", access_key="a", token=None)
    signer = Signer(SimpleNamespace(get_frozen_credentials=lambda: credentials), "us-east-1")
    first = signer._day_key("s", "20240101")
    assert signer._day_key("s", "20240101") is first
    assert signer._day_key("s", "20240102") != first and signer._day_key("t", "20240102") != first


def test_keys_and_queries_are_encoded_as_s3_signs_them():
    assert object_path("", "b", "a b+c~d/é") == "/b/a%20b%2Bc~d/%C3%A9"
    assert object_path("/prefix", "b", "k") == "/prefix/b/k"
    assert canonical_query({"versionId": "a+b/c=", "partNumber": 3}) == "partNumber=3&versionId=a%2Bb%2Fc%3D"


def test_an_error_reply_becomes_the_client_error_botocore_raises():
    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchVersion</Code><Message>gone</Message>'
            b"<VersionId>v1</VersionId></Error>")
    error = client_error(404, {"X-Amz-Request-Id": "r1"}, body, "GetObject")
    assert error.response["Error"] == {"Code": "NoSuchVersion", "Message": "gone", "VersionId": "v1"}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error.response["ResponseMetadata"]["RequestId"] == "r1" and error.operation_name == "GetObject"
    head = client_error(503, {}, b"", "HeadObject")
    assert head.response["Error"] == {"Code": "503", "Message": "Service Unavailable"}
    assert is_retryable(head) and is_site_error(head)
    slow = client_error(503, {}, b"<Error><Code>SlowDown</Code><Message>m</Message></Error>", "PutObject")
    assert is_site_error(slow) and is_retryable(client_error(500, {}, b"not xml", "PutObject"))
    assert not is_retryable(client_error(403, {}, b"<Error><Code>AccessDenied</Code></Error>", "PutObject"))


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto server that checks signatures: IAM auth on once the user with full access below is made."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = str(tmp_path_factory.mktemp("moto") / "moto.log")
    process = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log,
                    env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        wait_until(lambda: _answers(url), 30, "moto server", log)
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
        iam.create_user(UserName="crr")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="crr", PolicyName="all", PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName="crr")["AccessKey"]
        keys = {"aws_access_key_id": created["AccessKeyId"], "aws_secret_access_key": created["SecretAccessKey"]}
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}), **keys)
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        yield SimpleNamespace(url=url, keys=keys, s3=s3, data=make_data_client(url, "us-east-1", keys, 4, 10))
    finally:
        os.kill(process.pid, signal.SIGTERM)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/moto-api/", timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _put(data: S3Data, key: str, body: bytes, **arguments) -> dict:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return data.put_object("data", key, io.BytesIO(body), len(body), md5, hashlib.sha256(body).hexdigest(),
                           **arguments)


@pytest.mark.integration
def test_every_kind_of_key_is_written_read_and_headed_with_its_version_and_metadata(moto):
    for key in KEYS:
        written = _put(moto.data, key, key.encode(), Metadata={"scal-version-id": "v1", "Color": "blue"},
                       ContentType="text/x-test", CacheControl="no-cache", ContentDisposition="inline",
                       ContentEncoding="identity", ContentLanguage="fr", Tagging="team=a&b=c d",
                       Expires=datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
        got = moto.data.get_object("data", key, written["VersionId"])
        assert got["Body"].read() == key.encode(), key
        got["Body"].close()
        head = moto.data.head_object("data", key)
        theirs = moto.s3.head_object(Bucket="data", Key=key)
        for field in ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
                      "Metadata", "VersionId", "ContentLength", "ETag", "Expires"):
            assert (field, head.get(field)) == (field, theirs.get(field)), key
        assert got["TagCount"] == 2 and head["VersionId"] == written["VersionId"]
        tags = moto.s3.get_object_tagging(Bucket="data", Key=key, VersionId=written["VersionId"])["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("b", "c d"), ("team", "a")]


@pytest.mark.integration
def test_a_gzip_encoded_body_is_read_as_stored_not_decompressed(moto):
    stored = gzip.compress(b"hello " * 1000)
    version = _put(moto.data, "zipped", stored, ContentEncoding="gzip", ContentType="text/plain")["VersionId"]
    got = moto.data.get_object("data", "zipped", version)
    with got["Body"] as body:
        assert body.read() == stored and got["ContentEncoding"] == "gzip" and got["ContentLength"] == len(stored)


@pytest.mark.integration
def test_a_range_and_a_body_read_in_chunks_then_closed_early_leave_the_pool_usable(moto):
    body = os.urandom(300_000)
    version = _put(moto.data, "big", body)["VersionId"]
    ranged = moto.data.get_object("data", "big", version, byte_range=(10, 19))
    assert ranged["Body"].read() == body[10:20] and ranged["ContentLength"] == 10
    ranged["Body"].close()
    for _ in range(6):  # more than the pool's 4 connections, each closed unread
        partial = moto.data.get_object("data", "big", version)
        assert partial["Body"].read(1000) == body[:1000]
        partial["Body"].close()
    whole = moto.data.get_object("data", "big", version)
    assert b"".join(iter(lambda: whole["Body"].read(65536), b"")) == body
    whole["Body"].close()


@pytest.mark.integration
def test_missing_versions_keys_buckets_and_markers_are_the_errors_botocore_raises(moto):
    cases = [
        (lambda s3: s3.get_object("data", "nope", "no-such-version"),
         lambda: moto.s3.get_object(Bucket="data", Key="nope", VersionId="no-such-version")),
        (lambda s3: s3.get_object("data", "nope"), lambda: moto.s3.get_object(Bucket="data", Key="nope")),
        (lambda s3: s3.head_object("data", "nope"), lambda: moto.s3.head_object(Bucket="data", Key="nope")),
        (lambda s3: s3.head_object("gone-bucket", "k"), lambda: moto.s3.head_object(Bucket="gone-bucket", Key="k")),
        (lambda s3: s3.get_object("gone-bucket", "k"), lambda: moto.s3.get_object(Bucket="gone-bucket", Key="k")),
        (lambda s3: _put(s3, "k", b"x") and s3.get_object("gone-bucket", "k"),
         lambda: moto.s3.get_object(Bucket="gone-bucket", Key="k")),
    ]
    for ours, theirs in cases:
        with pytest.raises(ClientError) as mine:
            ours(moto.data)
        with pytest.raises(ClientError) as botos:
            theirs()
        assert mine.value.response["Error"]["Code"] == botos.value.response["Error"]["Code"]
        assert mine.value.response["Error"]["Message"] == botos.value.response["Error"]["Message"]
        status = botos.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert mine.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert mine.value.operation_name == botos.value.operation_name


@pytest.mark.integration
def test_a_delete_marker_heads_as_a_404_naming_the_marker(moto):
    _put(moto.data, "marked", b"x")
    marker = moto.s3.delete_object(Bucket="data", Key="marked")["VersionId"]
    with pytest.raises(ClientError) as raised:
        moto.data.head_object("data", "marked")
    headers = raised.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert raised.value.response["Error"]["Code"] == "404"
    assert (headers.get("x-amz-delete-marker"), headers.get("x-amz-version-id")) == ("true", marker)


@pytest.mark.integration
def test_a_wrong_secret_is_refused_and_not_retried(moto):
    wrong = make_data_client(moto.url, "us-east-1", dict(moto.keys, aws_secret_access_key="wrong"), 1, 5)
    with pytest.raises(ClientError) as raised:
        wrong.get_object("data", "plain")
    assert raised.value.response["Error"]["Code"] == "SignatureDoesNotMatch" and not is_retryable(raised.value)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.integration
def test_a_refused_connection_and_a_read_timeout_are_retryable_site_errors():
    refused = make_data_client("http://127.0.0.1:%d" % free_port(), "us-east-1",
                               {"aws_access_key_id": "a", "aws_secret_access_key": "b"}, 1, 5)
    with pytest.raises(Exception) as raised:
        refused.head_object("b", "k")
    assert is_retryable(raised.value) and is_site_error(raised.value)
    silent = _SilentServer()
    try:
        slow = make_data_client(silent.url, "us-east-1", {"aws_access_key_id": "a", "aws_secret_access_key": "b"},
                                1, 0.5)
        with pytest.raises(Exception) as raised:
            slow.get_object("b", "k")
        assert is_retryable(raised.value) and is_site_error(raised.value)
    finally:
        silent.close()


class _SilentServer:
    """Accepts connections and never answers: a read timeout."""

    def __init__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(4)
        self.url = "http://127.0.0.1:%d" % self.socket.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        try:
            while True:
                self.accepted.append(self.socket.accept()[0])
        except OSError:
            pass

    def close(self):
        self.socket.close()
        for connection in self.accepted:
            connection.close()


def test_a_put_without_the_body_hash_is_sent_unsigned_with_its_content_md5_signed():
    headers = put_headers(3, "bWQ1", {"Metadata": {"a": "b"}})
    signed = Signer(Credentials("key", "secret"), "us-east-1").sign("PUT", "h:9000", "/b/k", "", headers,
                                                                   UNSIGNED_PAYLOAD, FIXED)
    signed_names = signed["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "content-md5" in signed_names and "x-amz-meta-a" in signed_names


@pytest.mark.integration
def test_an_unsigned_put_over_plain_http_is_accepted_by_a_server_checking_signatures(moto):
    body = os.urandom(5000)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    written = moto.data.put_object("data", "unsigned", io.BytesIO(body), len(body), md5)
    got = moto.data.get_object("data", "unsigned", written["VersionId"])
    with got["Body"] as stream:
        assert stream.read() == body and got["ETag"].strip('"') == hashlib.md5(body).hexdigest()


def test_https_endpoints_verify_certificates():
    data = S3Data("https://s3.example.com", "us-east-1", None, 1, 1)
    assert data.https and data.pool.cert_reqs == "CERT_REQUIRED" and data.pool.ca_certs
    assert data.host == "s3.example.com"
    assert S3Data("http://h:8000/", "us-east-1", None, 1, 1).host == "h:8000"


def test_without_an_endpoint_the_region_s_aws_endpoint_is_used():
    data = make_data_client(None, "eu-west-3", {"aws_access_key_id": "a", "aws_secret_access_key": "b"}, 1, 1)
    assert data.https and data.host == "s3.eu-west-3.amazonaws.com"


class _RecordingServer(_SilentServer):
    """Answers every request 200 with no body, keeping each request's first line."""

    def __init__(self):
        self.lines = []
        super().__init__()

    def _accept(self):
        try:
            while True:
                connection = self.socket.accept()[0]
                self.accepted.append(connection)
                request = connection.recv(65536).decode("latin-1")
                self.lines.append(request.split("\r\n", 1)[0])
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                connection.close()
        except OSError:
            pass


def test_an_http_proxy_of_the_environment_is_used_as_botocore_uses_it(monkeypatch):
    proxy = _RecordingServer()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "direct.example")
        data = make_data_client("http://s3.example:9000", "us-east-1",
                                {"aws_access_key_id": "a", "aws_secret_access_key": "b"}, 1, 5)
        data.head_object("b", "a key", "v1")
        assert proxy.lines == ["HEAD http://s3.example:9000/b/a%20key?versionId=v1 HTTP/1.1"]
        direct = make_data_client("http://direct.example:9000", "us-east-1",
                                  {"aws_access_key_id": "a", "aws_secret_access_key": "b"}, 1, 5)
        assert direct.origin == "" and direct.pool.proxy is None and data.pool.proxy is not None
    finally:
        proxy.close()
