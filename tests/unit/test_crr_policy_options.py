"""crr_policy and crr_role without a server: option validation, and IAM errors moto cannot produce."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import botocore.exceptions
import pytest
from ansible_collections.backbeat.crr.plugins.module_utils import connection, iam
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure
from ansible_collections.backbeat.crr.plugins.module_utils.policy import PolicyError
from ansible_collections.backbeat.crr.plugins.modules import crr_policy, crr_role


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = params
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


def client_error(code, operation, message="boom"):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, operation)


class RecordingIAM:
    """An IAM client double: canned answers, optional errors, and the list of calls made."""

    def __init__(self, answers=None, errors=None):
        self.answers = answers or {}
        self.errors = errors or {}
        self.calls = []

    def __getattr__(self, method):
        def call(**kwargs):
            self.calls.append(method)
            if method in self.errors:
                raise self.errors[method]
            return self.answers.get(method, {})
        return call


def policy_params(**overrides):
    params = dict(name="bb-replication", path="/", description=None, document=None, source_bucket=None,
                  target_bucket=None, target_type=None, roles=None, purge_roles=False, state="present")
    params.update(overrides)
    return params


def role_params(**overrides):
    params = dict(name="bb-replication", path="/", description=None, trust_services=["backbeat"],
                  assume_role_policy_document=None, state="present")
    params.update(overrides)
    return params


# ------------------------------------------------------------ crr_policy options

def test_generator_options_give_the_replication_document():
    document, roles = crr_policy.validate_params(policy_params(source_bucket="src", target_bucket="tgt"))
    assert document["Statement"][2]["Resource"] == "arn:aws:s3:::tgt/*"
    assert roles is None


def test_target_type_defaults_to_scality_without_tagging_actions():
    document, _ = crr_policy.validate_params(policy_params(source_bucket="src", target_bucket="tgt"))
    assert "s3:ReplicateTags" not in document["Statement"][2]["Action"]


def test_document_and_generator_options_are_exclusive():
    with pytest.raises(PolicyError, match=r"^document: give either document or the generator options.*target_type"):
        crr_policy.validate_params(policy_params(document='{"Statement": []}', target_type="aws_s3"))


@pytest.mark.parametrize("given, missing", [
    ({"source_bucket": "src"}, "target_bucket"),
    ({"target_bucket": "tgt"}, "source_bucket"),
    ({"target_type": "aws_s3"}, "source_bucket"),
])
def test_incomplete_generator_inputs_name_what_is_missing(given, missing):
    with pytest.raises(PolicyError, match=r"^%s: the generated document needs" % missing):
        crr_policy.validate_params(policy_params(**given))


def test_present_needs_a_document_or_the_generator():
    with pytest.raises(PolicyError, match=r"^document: state=present needs"):
        crr_policy.validate_params(policy_params())


def test_absent_needs_no_document():
    assert crr_policy.validate_params(policy_params(state="absent")) == (None, None)


def test_roles_accept_names_and_role_arns_deduplicated():
    _, roles = crr_policy.validate_params(policy_params(
        source_bucket="src", target_bucket="tgt",
        roles=["b-role", "arn:aws:iam::111111111111:role/path/a-role", "a-role"]))
    assert roles == ["a-role", "b-role"]


@pytest.mark.parametrize("role, message", [
    ("arn:aws:iam::111111111111:user/u", "is not a role ARN"),
    ("arn:aws:s3:::bucket", "is not a role ARN"),
    ("bad role", "is not a valid IAM role name"),
])
def test_bad_roles_are_rejected(role, message):
    with pytest.raises(PolicyError, match=r"^roles: .*%s" % message):
        crr_policy.validate_params(policy_params(source_bucket="src", target_bucket="tgt", roles=[role]))


def test_bad_policy_name_is_rejected():
    with pytest.raises(PolicyError, match=r"^name: .* is not a valid IAM policy name"):
        crr_policy.validate_params(policy_params(name="a/b", source_bucket="src", target_bucket="tgt"))


# ------------------------------------------------------------ crr_role options

def test_role_default_trust_is_backbeat():
    trust = crr_role.validate_params(role_params())
    assert trust["Statement"][0]["Principal"] == {"Service": "backbeat"}


def test_role_trust_document_may_be_a_json_string():
    trust = crr_role.validate_params(role_params(
        assume_role_policy_document='{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}}'))
    assert trust["Statement"]["Principal"] == "*"


def test_role_needs_a_trust_service():
    with pytest.raises(PolicyError, match=r"^trust_services:"):
        crr_role.validate_params(role_params(trust_services=[]))


def test_role_absent_checks_only_name_and_path():
    assert crr_role.validate_params(role_params(state="absent", trust_services=[])) is None


def test_role_path_is_validated():
    with pytest.raises(PolicyError, match=r"^path:"):
        crr_role.validate_params(role_params(path="backbeat"))


# ------------------------------------------------------------ IAM errors

def test_limit_exceeded_on_new_version_names_the_call_and_the_policy():
    arn = "arn:aws:iam::111111111111:policy/p"
    quota = client_error("LimitExceeded", "CreatePolicyVersion", "Cannot exceed quota for PolicyVersions")
    fake = RecordingIAM(errors={"create_policy_version": quota})
    fake.get_paginator = lambda method: FakePaginator([{"Versions": [{"VersionId": "v1", "IsDefaultVersion": True}]}])
    with pytest.raises(ModuleFailure) as failed:
        crr_policy.update_document(fake, False, {"Arn": arn, "DefaultVersionId": "v1"},
                                   {"Statement": []}, {"Statement": [{"Effect": "Allow"}]})
    msg = failed.value.msg
    assert msg.startswith("create_policy_version on policy '%s' failed: LimitExceeded" % arn)
    assert "quota" in msg


def test_access_denied_on_get_role_names_the_call_and_the_role():
    fake = RecordingIAM(errors={"get_role": client_error("AccessDenied", "GetRole")})
    with pytest.raises(ModuleFailure) as failed:
        iam.get_role(fake, "bb-replication")
    assert failed.value.msg.startswith("get_role on role 'bb-replication' failed: AccessDenied")
    assert failed.value.result["error_code"] == "AccessDenied"


def test_no_such_entity_on_get_role_means_absent():
    fake = RecordingIAM(errors={"get_role": client_error("NoSuchEntity", "GetRole")})
    assert iam.get_role(fake, "bb-replication") is None


def test_unchanged_document_makes_no_write_call():
    fake = RecordingIAM()
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:A", "Resource": "*"}]}
    assert crr_policy.update_document(fake, False, {"Arn": "a"}, document, document) is False
    assert crr_policy.update_attachments(fake, False, "a", ["r"], ["r"], True) == (False, ["r"])
    assert fake.calls == []


def test_check_mode_change_makes_no_write_call():
    fake = RecordingIAM()
    fake.get_paginator = lambda method: FakePaginator([{"Versions": [
        {"VersionId": "v%d" % i, "IsDefaultVersion": i == 5} for i in range(1, 6)]}])
    changed = crr_policy.update_document(fake, True, {"Arn": "a"},
                                         {"Statement": []}, {"Statement": [{"Effect": "Allow"}]})
    assert changed is True
    assert crr_policy.update_attachments(fake, True, "a", ["old"], ["new"], True) == (True, ["new"])
    assert fake.calls == []


def test_oldest_non_default_version_skips_the_default():
    versions = [{"VersionId": "v1", "IsDefaultVersion": True}, {"VersionId": "v2"}, {"VersionId": "v3"}]
    assert iam.oldest_non_default_version(versions) == "v2"


@pytest.mark.parametrize("caller, expected", [
    ("arn:aws:sts::111111111111:assumed-role/admin/session", "arn:aws:iam::111111111111:role/backbeat/bb"),
    ("arn:aws-cn:iam::222222222222:user/ops", "arn:aws-cn:iam::222222222222:role/backbeat/bb"),
    ("arn:aws:iam:::user/ops", None),  # no account id: nothing to predict
    ("not-an-arn", None),
])
def test_predicted_role_arn_takes_partition_and_account_of_the_caller(caller, expected):
    sts = RecordingIAM(answers={"get_caller_identity": {"Arn": caller}})
    assert iam.predicted_role_arn(sts, "/backbeat/", "bb") == expected


def test_predicted_role_arn_is_none_without_sts():
    sts = RecordingIAM(errors={"get_caller_identity": client_error("InvalidAction", "GetCallerIdentity")})
    assert iam.predicted_role_arn(sts, "/", "bb") is None


class FakePaginator:
    def __init__(self, pages):
        self.pages = pages

    def paginate(self, **kwargs):
        return iter(self.pages)


# ------------------------------------------------------------ throttling is retried

class _ThrottlingIAM(BaseHTTPRequestHandler):
    """Answers GetRole with Throttling once, then with the role."""

    requests = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests += 1
        if type(self).requests == 1:
            body, status = ("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                            "<Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"), 400
        else:
            body, status = ("<GetRoleResponse><GetRoleResult><Role><Path>/</Path><RoleName>r</RoleName>"
                            "<RoleId>AROA1</RoleId><Arn>arn:aws:iam::111111111111:role/r</Arn>"
                            "<CreateDate>2024-01-01T00:00:00Z</CreateDate>"
                            "<AssumeRolePolicyDocument>%7B%22Statement%22%3A%5B%5D%7D</AssumeRolePolicyDocument>"
                            "</Role></GetRoleResult><ResponseMetadata><RequestId>2</RequestId></ResponseMetadata>"
                            "</GetRoleResponse>"), 200
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_throttling_is_retried_by_the_client():
    server = HTTPServer(("127.0.0.1", 0), _ThrottlingIAM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        params = dict(iam_endpoint_url="http://127.0.0.1:%d" % server.server_port, region="us-east-1",
                      access_key="testing", secret_key="testing", profile=None, session_token=None,
                      validate_certs=True)
        role = iam.get_role(connection.client(params, "iam"), "r")
    finally:
        server.shutdown()
        server.server_close()
    assert _ThrottlingIAM.requests == 2
    assert role["Arn"] == "arn:aws:iam::111111111111:role/r"
    assert role["AssumeRolePolicyDocument"] == {"Statement": []}  # URL-encoded JSON decoded
