"""crr_bucket_replication against the sandbox's moto S3, driven through ansible-playbook.

moto's GetBucketReplication drops rule prefixes, filters and DeleteMarkerReplication (ARCHITECTURE §6),
whereas S3 and CloudServer return what was stored. Scenarios whose rules carry those go through
`StoredReplicationProxy`, a pass-through HTTP proxy in front of moto that answers GetBucketReplication
with the configuration that was put (plus the IDs moto generated), as a real endpoint does. Everything
else (buckets, versioning, role, status, destination, storage class, priorities) is moto's own answer.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from playbook import changed_by_step, module_task, play, run_playbook
from playbook import four_steps as module_four_steps

pytestmark = pytest.mark.integration

MODULE = "backbeat.crr.crr_bucket_replication"
task = partial(module_task, MODULE)
four_steps = partial(module_four_steps, MODULE)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
SRC_ROLE = "arn:aws:iam::111111111111:role/backbeat-source"
TGT_ROLE = "arn:aws:iam::222222222222:role/backbeat-target"


# ------------------------------------------------------------------------------------------ harness


class StoredReplicationProxy:
    """Forwards every request to moto; GetBucketReplication returns the stored PutBucketReplication body.

    Connections are kept alive on both sides (HTTP/1.1 to the clients, one upstream connection per client
    connection): a new connection per request made moto start a thread for each, a cost no real endpoint has."""

    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.stored = {}
        self.connections = threading.local()  # each handler thread serves one client connection
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_any(self):
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request):
        if request.headers.get("Expect", "").lower() == "100-continue":
            request.send_response_only(100)  # botocore waits up to 1 s for it before sending a PUT's body
            request.end_headers()
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "expect")}
        response = self.forward(request.command, request.path, body, headers)
        status, reply_headers, reply = response.status, response.getheaders(), response.read()
        reply = self.rewrite(request.command, request.path, body, status, reply)
        request.send_response(status)
        for key, value in reply_headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                request.send_header(key, value)
        # a HEAD's Content-Length is the object's, as upstream said
        length = response.getheader("Content-Length", "0") if request.command == "HEAD" else len(reply)
        request.send_header("Content-Length", str(length))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(reply)

    def forward(self, method, path, body, headers):
        """Upstream's response, over this thread's kept-alive connection; sent again on a new one when the kept one
        turns out closed (moto closed it meanwhile) before any response came."""
        kept = getattr(self.connections, "upstream", None)
        if kept is not None:
            try:
                kept.request(method, path, body=body, headers=headers)
                return kept.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                kept.close()
        upstream = self.connections.upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port,
                                                                          timeout=60)
        upstream.request(method, path, body=body, headers=headers)
        return upstream.getresponse()

    def rewrite(self, method, path, body, status, reply):
        parts = urllib.parse.urlsplit(path)
        bucket = parts.path.strip("/").split("/")[0]
        is_replication = "replication" in urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if status >= 300:
            return reply
        if method == "PUT" and is_replication:
            self.stored[bucket] = body
        elif method == "DELETE" and (is_replication or parts.path.strip("/") == bucket):
            self.stored.pop(bucket, None)
        elif method == "GET" and is_replication and bucket in self.stored:
            return self.stored_reply(self.stored[bucket], reply)
        return reply

    @staticmethod
    def stored_reply(stored, moto_reply):
        """The stored configuration, with the rule IDs moto generated where the put gave none."""
        ET.register_namespace("", S3_NS)
        config = ET.fromstring(stored)
        generated = [rule.findtext("{%s}ID" % S3_NS) for rule in ET.fromstring(moto_reply).iter("{%s}Rule" % S3_NS)]
        for rule, rule_id in zip(config.iter("{%s}Rule" % S3_NS), generated):
            if rule.find("{%s}ID" % S3_NS) is None and rule_id:
                element = ET.Element("{%s}ID" % S3_NS)
                element.text = rule_id
                rule.insert(0, element)
        return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(config)


@pytest.fixture(scope="module")
def source_proxy(sandbox):
    proxy = StoredReplicationProxy(sandbox.source.url)
    yield proxy
    proxy.close()


def s3(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def versioning(url, bucket):
    return s3(url).get_bucket_versioning(Bucket=bucket).get("Status")


def stored_rules(url, bucket):
    return s3(url).get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"]


# ------------------------------------------------------------------------------------------- scenarios


def test_target_bucket_is_created_versioned_and_then_left_alone(sandbox):
    bucket = unique("tgt")
    run = run_playbook(four_steps(sandbox.target.url, bucket=bucket))
    assert changed_by_step(run) == [True, True, False, False]
    assert versioning(sandbox.target.url, bucket) == "Enabled"
    assert run.result("apply again")["replication_configuration"] is None


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_bucket_is_created_in_the_region_of_the_environment(sandbox, variable):
    bucket = unique("tgt")
    created = {**task("create", sandbox.target.url, bucket=bucket), "environment": {variable: "eu-west-1"}}
    run = run_playbook(play(created))
    assert run.rc == 0, run.stdout[-3000:]
    assert s3(sandbox.target.url).get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"


def test_region_option_wins_over_the_environment(sandbox):
    bucket = unique("tgt")
    created = {**task("create", sandbox.target.url, bucket=bucket, region="eu-central-1"),
               "environment": {"AWS_REGION": "eu-west-1"}}
    run = run_playbook(play(created))
    assert run.rc == 0, run.stdout[-3000:]
    assert s3(sandbox.target.url).get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1"


def test_cloudserver_two_role_configuration_to_a_scality_site_is_idempotent(sandbox):
    source, target = unique("src"), unique("tgt")
    rules = [{"id": "all", "prefix": "", "destination_bucket": target, "storage_class": "zenko"}]
    run = run_playbook(four_steps(sandbox.source.url, bucket=source, role=[SRC_ROLE, TGT_ROLE],
                                  site_type="scality", rules=rules))
    assert changed_by_step(run) == [True, True, False, False]
    applied = s3(sandbox.source.url).get_bucket_replication(Bucket=source)["ReplicationConfiguration"]
    assert applied["Role"] == SRC_ROLE + "," + TGT_ROLE
    assert applied["Rules"][0]["Destination"] == {"Bucket": "arn:aws:s3:::" + target, "StorageClass": "zenko"}
    result = run.result("apply again")
    assert result["versioning"] == "Enabled"
    assert result["replication_configuration"]["rules"][0]["storage_class"] == "zenko"


def test_rules_without_ids_are_not_changed_by_server_generated_ids(sandbox):
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "zenko"}]
    run = run_playbook(four_steps(sandbox.source.url, bucket=source, role=[SRC_ROLE, TGT_ROLE], rules=rules))
    assert changed_by_step(run) == [True, True, False, False]
    assert stored_rules(sandbox.source.url, source)[0]["ID"]  # moto generated one


def test_changed_rule_prefix_is_applied_with_a_diff(sandbox, source_proxy):
    source, target = unique("src"), unique("tgt")
    options = dict(bucket=source, role=[SRC_ROLE, TGT_ROLE], site_type="scality")
    before = [{"id": "logs", "prefix": "logs/", "destination_bucket": target, "storage_class": "zenko"}]
    after = [{"id": "logs", "prefix": "logs/2026/", "destination_bucket": target, "storage_class": "zenko"},
             {"id": "docs", "prefix": "docs/", "destination_bucket": target, "storage_class": "zenko"}]
    assert run_playbook(play(task("setup", source_proxy.url, rules=before, **options))).rc == 0
    run = run_playbook(play(task("change", source_proxy.url, rules=after, **options),
                            task("same again", source_proxy.url, rules=after, **options)), diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    change = run.result("change")
    assert change["changed"] is True
    assert [r["prefix"] for r in change["diff"]["before"]["rules"]] == ["logs/"]
    assert [r["prefix"] for r in change["diff"]["after"]["rules"]] == ["logs/2026/", "docs/"]
    assert run.result("same again")["changed"] is False
    assert [r["ID"] for r in stored_rules(sandbox.source.url, source)] == ["logs", "docs"]


def test_changed_rule_status_is_applied_on_plain_moto(sandbox):
    source, target = unique("src"), unique("tgt")
    options = dict(bucket=source, role=[SRC_ROLE, TGT_ROLE])
    rules = [{"id": "all", "destination_bucket": target, "storage_class": "zenko"}]
    disabled = [dict(rules[0], status="Disabled")]
    assert run_playbook(play(task("setup", sandbox.source.url, rules=rules, **options))).rc == 0
    run = run_playbook(play(task("disable", sandbox.source.url, rules=disabled, **options)), diff=True)
    assert run.result("disable")["changed"] is True
    assert run.result("disable")["diff"]["before"]["rules"][0]["status"] == "Enabled"
    assert stored_rules(sandbox.source.url, source)[0]["Status"] == "Disabled"


def test_suspended_versioning_is_enabled_again(sandbox):
    bucket = unique("src")
    client = s3(sandbox.source.url)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    run = run_playbook(four_steps(sandbox.source.url, bucket=bucket))
    assert changed_by_step(run) == [True, True, False, False]
    assert versioning(sandbox.source.url, bucket) == "Enabled"


def test_bucket_creation_is_in_the_diff(sandbox):
    bucket = unique("tgt")
    run = run_playbook(play(task("check", sandbox.target.url, check=True, bucket=bucket),
                            task("create", sandbox.target.url, bucket=bucket)), diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    for step in ("check", "create"):
        assert run.result(step)["diff"] == {"before": {}, "after": {"bucket": bucket, "versioning": "Enabled"}}


def test_versioning_suspended_behind_the_modules_back_is_in_the_diff(sandbox):
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "zenko"}]
    options = dict(bucket=source, role=[SRC_ROLE, TGT_ROLE], rules=rules)
    assert run_playbook(play(task("setup", sandbox.source.url, **options))).rc == 0
    s3(sandbox.source.url).put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Suspended"})
    run = run_playbook(play(task("check", sandbox.source.url, check=True, **options),
                            task("enable", sandbox.source.url, **options)), diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    for step in ("check", "enable"):
        result = run.result(step)
        assert result["changed"] is True
        assert (result["diff"]["before"]["versioning"], result["diff"]["after"]["versioning"]) == \
            ("Suspended", "Enabled")
        assert result["diff"]["before"]["rules"] == result["diff"]["after"]["rules"]


def test_absent_removes_the_configuration_and_keeps_bucket_and_versioning(sandbox):
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "zenko"}]
    setup = run_playbook(play(task("setup", sandbox.source.url, bucket=source, role=[SRC_ROLE, TGT_ROLE], rules=rules)))
    assert setup.rc == 0, setup.stdout[-3000:]
    run = run_playbook(four_steps(sandbox.source.url, bucket=source, state="absent"))
    assert changed_by_step(run) == [True, True, False, False]
    with pytest.raises(s3(sandbox.source.url).exceptions.ClientError, match="ReplicationConfigurationNotFound"):
        s3(sandbox.source.url).get_bucket_replication(Bucket=source)
    assert versioning(sandbox.source.url, source) == "Enabled"


def test_check_mode_changes_nothing(sandbox):
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "zenko"}]
    run = run_playbook(play(task("check", sandbox.source.url, bucket=source, role=[SRC_ROLE, TGT_ROLE], rules=rules)),
                       check=True, diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("check")["changed"] is True
    assert run.result("check")["diff"]["after"]["role"] == SRC_ROLE + "," + TGT_ROLE
    assert source not in [b["Name"] for b in s3(sandbox.source.url).list_buckets()["Buckets"]]


def test_aws_schema_priorities_and_tag_filters_are_idempotent(sandbox, source_proxy):
    source, target = unique("src"), unique("tgt")
    rules = [
        {"id": "tagged-docs", "priority": 1, "filter": {"prefix": "docs/", "tags": {"replicate": "yes"}},
         "delete_marker_replication": "Enabled", "destination_bucket": target},
        {"id": "tagged", "priority": 2, "filter": {"tags": {"tier": "gold"}}, "destination_bucket": target,
         "storage_class": "STANDARD_IA"},
    ]
    run = run_playbook(four_steps(source_proxy.url, bucket=source, schema="aws", role=SRC_ROLE, rules=rules))
    assert changed_by_step(run) == [True, True, False, False]
    assert [(r["ID"], r["Priority"]) for r in stored_rules(sandbox.source.url, source)] == \
        [("tagged-docs", 1), ("tagged", 2)]
    returned = run.result("apply again")["replication_configuration"]["rules"]
    assert returned[0]["tags"] == {"replicate": "yes"} and returned[0]["prefix"] == "docs/"
    assert returned[0]["delete_marker_replication"] == "Enabled"


def test_one_role_for_a_scality_site_fails_before_any_call(sandbox):
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "zenko"}]
    run = run_playbook(play(task("bad", sandbox.source.url, bucket=source, role=[SRC_ROLE], site_type="scality",
                                 rules=rules)))
    assert run.rc != 0
    assert run.result("bad")["msg"].startswith("role: a Scality site needs exactly two role ARNs")
    assert source not in [b["Name"] for b in s3(sandbox.source.url).list_buckets()["Buckets"]]


def test_site_type_is_read_from_the_cloudserver_config(sandbox, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"replicationEndpoints": [{"site": "awsbackend", "type": "aws_s3"}]}')
    source = unique("src")
    rules = [{"destination_bucket": unique("tgt"), "storage_class": "awsbackend"}]
    two_roles = run_playbook(play(task("two roles", sandbox.source.url, bucket=source, role=[SRC_ROLE, TGT_ROLE],
                                       cloudserver_config=str(config), rules=rules)))
    assert two_roles.result("two roles")["msg"].startswith("role: a cloud site (aws_s3) takes exactly one role ARN")
    one_role = run_playbook(play(task("one role", sandbox.source.url, bucket=source, role=SRC_ROLE,
                                      cloudserver_config=str(config), rules=rules)))
    assert one_role.result("one role")["changed"] is True


def test_missing_bucket_without_create_bucket_is_an_error(sandbox):
    run = run_playbook(play(task("no create", sandbox.source.url, bucket=unique("src"), create_bucket=False)))
    assert "does not exist; create it or set create_bucket: true" in run.result("no create")["msg"]
