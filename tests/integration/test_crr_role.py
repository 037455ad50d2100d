"""crr_role against the sandbox's moto IAM, driven through ansible-playbook."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import boto3
import pytest
from playbook import run_playbook

pytestmark = pytest.mark.integration

# Nothing listens there: a module that called IAM before validating would fail on the connection instead.
UNREACHABLE = SimpleNamespace(url="http://127.0.0.1:9", account_id="000000000000")

TRUST_TWO_SERVICES = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": ["s3.amazonaws.com", "backbeat"]},
                   "Action": "sts:AssumeRole"}],
}


def _iam(endpoint):
    return boto3.client("iam", endpoint_url=endpoint.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _connection(endpoint):
    return {"iam_endpoint_url": endpoint.url, "access_key": "testing", "secret_key": "testing"}


def _role_play(endpoint, **options):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "role", "backbeat.crr.crr_role": {**_connection(endpoint), **options}},
    ]}]


def _run(endpoint, check=False, diff=False, **options):
    run = run_playbook(_role_play(endpoint, **options), check=check, diff=diff)
    return run, run.result("role")


def _unique(prefix="crr-role"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def _role_or_none(iam, name):
    try:
        return iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None


def test_create_is_idempotent_in_four_steps(sandbox):
    name, iam = _unique(), _iam(sandbox.source)

    run, result = _run(sandbox.source, check=True, name=name)
    assert run.rc == 0 and result["changed"] is True
    assert result["arn"] == "arn:aws:iam::111111111111:role/%s" % name  # predicted, for later tasks
    assert _role_or_none(iam, name) is None

    run, result = _run(sandbox.source, name=name)
    assert run.rc == 0 and result["changed"] is True
    assert result["arn"] == "arn:aws:iam::111111111111:role/%s" % name
    assert result["role_name"] == name and result["path"] == "/" and result["role_id"]
    assert result["assume_role_policy_document"]["Statement"][0]["Principal"] == {"Service": "backbeat"}

    run, result = _run(sandbox.source, name=name)
    assert run.rc == 0 and result["changed"] is False
    assert result["arn"] == "arn:aws:iam::111111111111:role/%s" % name

    run, result = _run(sandbox.source, check=True, name=name)
    assert run.rc == 0 and result["changed"] is False


# Anything botocore would reach without an endpoint option: nothing answers there.
TRAP_ENVIRONMENT = {"AWS_ENDPOINT_URL_IAM": UNREACHABLE.url, "AWS_ENDPOINT_URL_STS": UNREACHABLE.url}


def test_endpoint_url_alone_is_the_iam_endpoint(sandbox):
    """As in amazon.aws' IAM modules: the role is made at endpoint_url, in check mode and for real."""
    name, iam = _unique(), _iam(sandbox.source)
    task = {"name": "role", "environment": TRAP_ENVIRONMENT, "backbeat.crr.crr_role": {
        "endpoint_url": sandbox.source.url, "access_key": "testing", "secret_key": "testing", "name": name}}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]

    dry = run_playbook(play, check=True)
    assert dry.rc == 0, dry.stdout[-2000:]
    assert dry.result("role")["arn"] == "arn:aws:iam::111111111111:role/%s" % name  # STS there too

    run = run_playbook(play)
    assert run.rc == 0, run.stdout[-2000:]
    assert run.result("role")["changed"] is True
    assert _role_or_none(iam, name)["Arn"] == "arn:aws:iam::111111111111:role/%s" % name


def test_trust_policy_compared_order_insensitively(sandbox):
    name = _unique()
    _run(sandbox.source, name=name, assume_role_policy_document=TRUST_TWO_SERVICES)
    reordered = {  # other key and list order, Statement as a single object, Action as a list
        "Version": "2012-10-17",
        "Statement": {"Action": ["sts:AssumeRole"], "Effect": "Allow",
                      "Principal": {"Service": ["backbeat", "s3.amazonaws.com"]}},
    }
    run, result = _run(sandbox.source, name=name, assume_role_policy_document=json.dumps(reordered))
    assert run.rc == 0 and result["changed"] is False
    run, result = _run(sandbox.source, name=name, trust_services=["backbeat", "s3.amazonaws.com"])
    assert run.rc == 0 and result["changed"] is False


def test_changed_trust_policy_is_updated_check_mode_first(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    _run(sandbox.source, name=name)

    run, result = _run(sandbox.source, check=True, diff=True, name=name, trust_services=["backbeat", "replication"])
    assert run.rc == 0 and result["changed"] is True
    assert result["diff"]["before"]["assume_role_policy_document"]["Statement"][0]["Principal"] == \
        {"Service": "backbeat"}
    assert result["diff"]["after"]["assume_role_policy_document"]["Statement"][0]["Principal"] == \
        {"Service": ["backbeat", "replication"]}
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == \
        {"Service": "backbeat"}

    run, result = _run(sandbox.source, name=name, trust_services=["backbeat", "replication"])
    assert run.rc == 0 and result["changed"] is True
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == \
        {"Service": ["backbeat", "replication"]}

    run, result = _run(sandbox.source, name=name, trust_services=["replication", "backbeat"])
    assert run.rc == 0 and result["changed"] is False


def test_description_is_updated(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    _run(sandbox.source, name=name, description="first")
    run, result = _run(sandbox.source, name=name, description="second")
    assert result["changed"] is True and result["description"] == "second"
    assert iam.get_role(RoleName=name)["Role"]["Description"] == "second"
    run, result = _run(sandbox.source, name=name)  # omitted: left as it is
    assert result["changed"] is False and result["description"] == "second"


def test_diff_mode_prints_the_trust_policy_change(sandbox):
    name = _unique()
    _run(sandbox.source, name=name)
    run = run_playbook(_role_play(sandbox.source, name=name, trust_services=["replication"]),
                       diff=True, json_output=False)
    assert run.rc == 0
    assert '-                    "Service": "backbeat"' in run.stdout
    assert '+                    "Service": "replication"' in run.stdout
    assert "changed: [localhost]" in run.stdout


def test_absent_detaches_deletes_inline_and_deletes_the_role(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    _run(sandbox.source, name=name)
    policy = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}]}))
    iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
    iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}]}))

    run, result = _run(sandbox.source, check=True, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is True
    assert _role_or_none(iam, name) is not None
    assert len(iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]) == 1

    run, result = _run(sandbox.source, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is True and result["arn"] is None
    assert _role_or_none(iam, name) is None
    assert iam.get_policy(PolicyArn=policy["Policy"]["Arn"])["Policy"]["AttachmentCount"] == 0

    run, result = _run(sandbox.source, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is False
    run, result = _run(sandbox.source, check=True, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is False


def test_existing_role_with_another_path_fails_naming_path(sandbox):
    name = _unique()
    _run(sandbox.source, name=name, path="/backbeat/")
    run, result = _run(sandbox.source, name=name)
    assert run.rc != 0 and result["failed"]
    assert result["msg"].startswith("path:") and "/backbeat/" in result["msg"]


@pytest.mark.parametrize("options, message", [
    ({"assume_role_policy_document": '{"Version": "2012-10-17", "Statement": [}'},
     "assume_role_policy_document: not valid JSON"),
    ({"assume_role_policy_document": {"Version": "2012-10-17"}},
     "assume_role_policy_document: the document has no 'Statement'"),
    ({"assume_role_policy_document": {"Statement": [{"Effect": "Permit", "Principal": {"Service": "backbeat"},
                                                     "Action": "sts:AssumeRole"}]}},
     "Effect must be 'Allow' or 'Deny', got 'Permit'"),
    ({"assume_role_policy_document": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "backbeat"},
                                                     "Action": "AssumeRole"}]}},
     "action 'AssumeRole' has no service prefix"),
    ({"assume_role_policy_document": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "backbeat"},
                                                     "Action": "sts:AssumeRole", "Resource": "bucket"}]}},
     "resource 'bucket' is neither an ARN nor '*'"),
    ({"name_override": "bad name!"}, "name: 'bad name!' is not a valid IAM role name"),
    ({"trust_services": ["backbeat"], "assume_role_policy_document": TRUST_TWO_SERVICES},
     "mutually exclusive: trust_services|assume_role_policy_document"),
])
def test_bad_input_fails_before_any_call_and_creates_nothing(sandbox, options, message):
    name, iam = _unique(), _iam(sandbox.source)
    options = dict(options)
    name = options.pop("name_override", name)
    run, result = _run(sandbox.source, name=name, **options)
    assert run.rc != 0 and result["failed"]
    assert message in result["msg"]
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == name]
    # against an unreachable endpoint the same message: no API call came first
    run, result = _run(UNREACHABLE, name=name, **options)
    assert run.rc != 0 and message in result["msg"]
