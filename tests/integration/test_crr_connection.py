"""The connection options with amazon.aws habits, for real against the sandbox's moto: option names,
environment variables, a TLS endpoint whose certificate only a given CA bundle vouches for, a wrong profile.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playbook import play, run_playbook

pytestmark = pytest.mark.integration

BUCKET_MODULE = "backbeat.crr.crr_bucket_replication"
ROLE_MODULE = "backbeat.crr.crr_role"


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def iam(endpoint):
    return boto3.client("iam", endpoint_url=endpoint.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def module_task(module, options, environment=None):
    entry = {"name": "task", module: options}
    if environment is not None:
        entry["environment"] = environment
    return entry


def run(module, options, environment=None):
    done = run_playbook(play(module_task(module, options, environment)))
    return done, done.result("task")


# ------------------------------------------------------------------------------- amazon.aws names


def test_amazon_aws_option_names_reach_the_endpoint(sandbox):
    bucket = unique("names")
    done, result = run(BUCKET_MODULE, {"aws_endpoint_url": sandbox.target.url, "aws_access_key_id": "testing",
                                       "aws_secret_access_key": "testing", "aws_region": "eu-west-1",
                                       "bucket": bucket})
    assert done.rc == 0, done.stdout[-3000:]
    assert s3(sandbox.target).get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


def test_environment_alone_gives_endpoint_keys_and_region(sandbox):
    bucket = unique("env")
    environment = {"AWS_URL": sandbox.target.url, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1"}
    done, result = run(BUCKET_MODULE, {"bucket": bucket}, environment)
    assert done.rc == 0, done.stdout[-3000:]
    assert s3(sandbox.target).get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


def test_aws_url_is_the_iam_endpoint_of_the_iam_modules(sandbox):
    name = unique("env-role")
    environment = {"AWS_URL": sandbox.source.url, "AWS_ACCESS_KEY": "testing", "AWS_SECRET_KEY": "testing"}
    done, result = run(ROLE_MODULE, {"name": name}, environment)
    assert done.rc == 0, done.stdout[-3000:]
    assert iam(sandbox.source).get_role(RoleName=name)["Role"]["Arn"] == result["arn"]


def test_unknown_profile_fails_naming_the_option(sandbox, tmp_path):
    (tmp_path / "config").write_text("")
    environment = {"AWS_CONFIG_FILE": str(tmp_path / "config"),
                   "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "config")}
    done, result = run(ROLE_MODULE, {"endpoint_url": sandbox.source.url, "profile": "nosuch", "name": "r"},
                       environment)
    assert done.rc != 0
    assert result["msg"].startswith("profile: the config profile (nosuch) could not be found")
    assert "Traceback" not in result.get("module_stderr", "") + result.get("exception", "")


# ------------------------------------------------------------------------------ a TLS endpoint


def self_signed_certificate(directory):
    """(certificate, key) files for 127.0.0.1, signed by themselves: no system CA vouches for them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backbeat.crr test endpoint")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "endpoint.pem", directory / "endpoint.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class TlsProxy:
    """HTTPS in front of moto: requests are passed on as they came, answers passed back."""

    def __init__(self, upstream, cert_file, key_file):
        target = urllib.parse.urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                reply = response.read()
                connection.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tls_target(sandbox, tmp_path_factory):
    """(the target's URL through TLS, the certificate that verifies it)."""
    cert_file, key_file = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    proxy = TlsProxy(sandbox.target.url, cert_file, key_file)
    yield proxy.url, cert_file
    proxy.close()


def tls_options(url, bucket, **more):
    return {"endpoint_url": url, "access_key": "testing", "secret_key": "testing", "bucket": bucket, **more}


def test_aws_ca_bundle_verifies_a_self_signed_endpoint(sandbox, tls_target):
    url, cert_file = tls_target
    bucket = unique("tls")
    done, result = run(BUCKET_MODULE, tls_options(url, bucket, aws_ca_bundle=str(cert_file)),
                       {"AWS_CA_BUNDLE": ""})
    assert done.rc == 0, done.stdout[-3000:]
    assert result["changed"] is True and result["versioning"] == "Enabled"
    assert s3(sandbox.target).get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_aws_ca_bundle_environment_variable_verifies_a_self_signed_endpoint(sandbox, tls_target):
    url, cert_file = tls_target
    bucket = unique("tls-env")
    done, result = run(BUCKET_MODULE, tls_options(url, bucket), {"AWS_CA_BUNDLE": str(cert_file)})
    assert done.rc == 0, done.stdout[-3000:]
    assert s3(sandbox.target).get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_self_signed_endpoint_is_refused_without_its_ca_bundle(sandbox, tls_target):
    url, _ = tls_target
    bucket = unique("tls-none")
    done, result = run(BUCKET_MODULE, tls_options(url, bucket), {"AWS_CA_BUNDLE": ""})
    assert done.rc != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result["msg"]
    assert bucket not in [b["Name"] for b in s3(sandbox.target).list_buckets()["Buckets"]]
