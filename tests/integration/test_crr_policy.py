"""crr_policy (and the seeds' manual IAM setup) against the sandbox's moto IAM, through ansible-playbook."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import boto3
import pytest
from playbook import run_playbook

pytestmark = pytest.mark.integration

# Nothing listens there: a module that called IAM before validating would fail on the connection instead.
UNREACHABLE = SimpleNamespace(url="http://127.0.0.1:9", account_id="000000000000")


def _iam(endpoint):
    return boto3.client("iam", endpoint_url=endpoint.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _connection(endpoint):
    return {"iam_endpoint_url": endpoint.url, "access_key": "testing", "secret_key": "testing"}


def _unique(prefix="crr-policy"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def _play(*tasks):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def _policy_task(endpoint, task="policy", **options):
    return {"name": task, "backbeat.crr.crr_policy": {**_connection(endpoint), **options}}


def _run(endpoint, check=False, diff=False, **options):
    run = run_playbook(_play(_policy_task(endpoint, **options)), check=check, diff=diff)
    return run, run.result("policy")


def _policy_arn(endpoint, name):
    return "arn:aws:iam::%s:policy/%s" % (endpoint.account_id, name)


def _policy_or_none(iam, arn):
    try:
        return iam.get_policy(PolicyArn=arn)["Policy"]
    except iam.exceptions.NoSuchEntityException:
        return None


def _versions(iam, arn):
    return sorted(v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"])


def _attached_roles(iam, arn):
    return sorted(r["RoleName"] for r in iam.list_entities_for_policy(PolicyArn=arn)["PolicyRoles"])


def _document(source_bucket, target_bucket="target-bucket"):
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObjectVersion"], "Resource": "arn:aws:s3:::%s/*" % source_bucket},
        {"Effect": "Allow", "Action": "s3:ReplicateObject", "Resource": ["arn:aws:s3:::%s/*" % target_bucket]},
    ]}


def _seed_setup_play(sandbox, role, policy, source_bucket, target_bucket):
    """The seeds' manual setup: role + policy + attach, on the source and on the target."""
    tasks = []
    for side in ("source", "target"):
        endpoint = getattr(sandbox, side)
        tasks.append({"name": "%s role" % side, "backbeat.crr.crr_role": {**_connection(endpoint), "name": role},
                      "register": "%s_role" % side})
        tasks.append(_policy_task(endpoint, task="%s policy" % side, name=policy, source_bucket=source_bucket,
                                  target_bucket=target_bucket, roles=["{{ %s_role.arn }}" % side]))
    return _play(*tasks)


def test_seed_setup_on_source_and_target_is_idempotent(sandbox):
    role, policy = _unique("bb-replication"), _unique("bb-replication")
    play = _seed_setup_play(sandbox, role, policy, "source-bucket", "target-bucket")

    dry = run_playbook(play, check=True)
    assert dry.rc == 0, dry.stdout + dry.stderr
    assert dry.changed_tasks == ["source role", "source policy", "target role", "target policy"]
    assert dry.result("target policy")["attached_roles"] == [role]  # the predicted role ARN was usable
    for side in ("source", "target"):
        endpoint = getattr(sandbox, side)
        assert _policy_or_none(_iam(endpoint), _policy_arn(endpoint, policy)) is None

    first = run_playbook(play)
    assert first.rc == 0, first.stdout + first.stderr
    assert first.changed_tasks == ["source role", "source policy", "target role", "target policy"]
    for side in ("source", "target"):
        endpoint, result = getattr(sandbox, side), first.result("%s policy" % side)
        assert result["arn"] == _policy_arn(endpoint, policy)
        assert result["attached_roles"] == [role]
        assert result["default_version_id"] == "v1"
        assert _attached_roles(_iam(endpoint), result["arn"]) == [role]

    second = run_playbook(play)
    assert second.rc == 0
    assert second.changed_tasks == []
    for side in ("source", "target"):
        endpoint = getattr(sandbox, side)
        assert _versions(_iam(endpoint), _policy_arn(endpoint, policy)) == ["v1"]

    third = run_playbook(play, check=True)
    assert third.rc == 0 and third.changed_tasks == []


def test_endpoint_url_alone_is_the_iam_endpoint(sandbox):
    """As in amazon.aws' IAM modules: the policy is made at endpoint_url, nothing goes anywhere else."""
    name = _unique()
    trap = {"AWS_ENDPOINT_URL_IAM": UNREACHABLE.url, "AWS_ENDPOINT_URL_STS": UNREACHABLE.url}
    task = {"name": "policy", "environment": trap, "backbeat.crr.crr_policy": {
        "endpoint_url": sandbox.source.url, "access_key": "testing", "secret_key": "testing", "name": name,
        "source_bucket": "source-bucket", "target_bucket": "target-bucket"}}
    run = run_playbook(_play(task))
    assert run.rc == 0, run.stdout[-2000:]
    assert run.result("policy")["arn"] == _policy_arn(sandbox.source, name)
    assert _policy_or_none(_iam(sandbox.source), _policy_arn(sandbox.source, name)) is not None


def test_generated_document_is_the_seeds_replication_policy(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    run, result = _run(sandbox.source, name=name, source_bucket="src", target_bucket="tgt")
    assert run.rc == 0
    stored = iam.get_policy_version(PolicyArn=result["arn"], VersionId="v1")["PolicyVersion"]["Document"]
    assert stored == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObjectVersion", "s3:GetObjectVersionAcl"],
         "Resource": ["arn:aws:s3:::src/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetReplicationConfiguration"],
         "Resource": ["arn:aws:s3:::src"]},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete"],
         "Resource": "arn:aws:s3:::tgt/*"},
    ]}


def test_four_steps_create_then_changed_document(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    arn = _policy_arn(sandbox.source, name)

    steps = [(True, True), (False, True), (False, False), (True, False)]
    for check, changed in steps:
        run, result = _run(sandbox.source, check=check, name=name, document=_document("a"))
        assert run.rc == 0 and result["changed"] is changed, (check, result)
        assert (_policy_or_none(iam, arn) is None) == (check and changed)

    for check, changed in steps:
        run, result = _run(sandbox.source, check=check, name=name, document=_document("b"))
        assert run.rc == 0 and result["changed"] is changed, (check, result)
        assert _versions(iam, arn) == (["v1"] if check and changed else ["v1", "v2"])
    assert result["default_version_id"] == "v2"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"


def test_changed_document_prunes_oldest_non_default_version_at_five(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    arn = _policy_arn(sandbox.source, name)
    for index in range(5):
        run, result = _run(sandbox.source, name=name, document=_document("bucket-%d" % index))
        assert run.rc == 0 and result["default_version_id"] == "v%d" % (index + 1)
    assert _versions(iam, arn) == ["v1", "v2", "v3", "v4", "v5"]

    run, result = _run(sandbox.source, check=True, name=name, document=_document("bucket-5"))
    assert run.rc == 0 and result["changed"] is True
    assert _versions(iam, arn) == ["v1", "v2", "v3", "v4", "v5"]

    run, result = _run(sandbox.source, name=name, document=_document("bucket-5"))
    assert run.rc == 0 and result["changed"] is True and result["default_version_id"] == "v6"
    assert _versions(iam, arn) == ["v2", "v3", "v4", "v5", "v6"]

    # v1 is the default: the oldest non-default (v2) goes, the default stays.
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v2")
    run, result = _run(sandbox.source, name=name, document=_document("bucket-7"))
    assert run.rc == 0 and result["changed"] is True
    assert _versions(iam, arn) == ["v2", "v4", "v5", "v6", "v7"]


def test_equivalent_document_reordered_is_unchanged(sandbox):
    name = _unique()
    _run(sandbox.source, name=name, document=_document("a"))
    reordered = {"Statement": list(reversed(_document("a")["Statement"])), "Version": "2012-10-17"}
    reordered["Statement"][0]["Resource"] = "arn:aws:s3:::target-bucket/*"
    reordered["Statement"][1]["Action"] = "s3:GetObjectVersion"
    run, result = _run(sandbox.source, name=name, document=reordered)
    assert run.rc == 0 and result["changed"] is False and result["default_version_id"] == "v1"


def test_diff_shows_the_document_change(sandbox):
    name = _unique()
    _run(sandbox.source, name=name, source_bucket="src", target_bucket="tgt")
    run, result = _run(sandbox.source, check=True, diff=True, name=name, source_bucket="src", target_bucket="tgt",
                       target_type="aws_s3")
    assert run.rc == 0 and result["changed"] is True
    before_actions = result["diff"]["before"]["document"]["Statement"][2]["Action"]
    after_actions = result["diff"]["after"]["document"]["Statement"][2]["Action"]
    assert "s3:ReplicateTags" not in before_actions and "s3:ReplicateTags" in after_actions

    text = run_playbook(_play(_policy_task(sandbox.source, name=name, source_bucket="src", target_bucket="tgt",
                                           target_type="aws_s3")), diff=True, json_output=False)
    assert text.rc == 0
    assert '+                    "s3:ReplicateTags"' in text.stdout
    assert '+                    "s3:GetObjectVersionTagging"' in text.stdout


def test_roles_attach_and_purge(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    roles = [_unique("crr-role") for _ in range(3)]
    for role in roles:
        run_playbook(_play({"name": "r", "backbeat.crr.crr_role": {**_connection(sandbox.source), "name": role}}))
    arn = _policy_arn(sandbox.source, name)

    run, result = _run(sandbox.source, name=name, document=_document("a"), roles=roles[:2])
    assert result["changed"] is True and result["attached_roles"] == sorted(roles[:2])

    # without purge_roles, roles not listed stay attached
    run, result = _run(sandbox.source, name=name, document=_document("a"), roles=[roles[2]])
    assert result["changed"] is True and result["attached_roles"] == sorted(roles)
    assert _attached_roles(iam, arn) == sorted(roles)

    run, result = _run(sandbox.source, check=True, name=name, document=_document("a"),
                       roles=["arn:aws:iam::111111111111:role/%s" % roles[0]], purge_roles=True)
    assert result["changed"] is True and result["attached_roles"] == [roles[0]]
    assert _attached_roles(iam, arn) == sorted(roles)

    run, result = _run(sandbox.source, name=name, document=_document("a"),
                       roles=["arn:aws:iam::111111111111:role/%s" % roles[0]], purge_roles=True)
    assert result["changed"] is True and result["attached_roles"] == [roles[0]]
    assert _attached_roles(iam, arn) == [roles[0]]

    run, result = _run(sandbox.source, name=name, document=_document("a"), roles=[roles[0]], purge_roles=True)
    assert result["changed"] is False

    run, result = _run(sandbox.source, name=name, document=_document("a"))  # roles omitted: left as they are
    assert result["changed"] is False and result["attached_roles"] == [roles[0]]


def test_attaching_a_missing_role_names_the_call_and_the_role(sandbox):
    name = _unique()
    run, result = _run(sandbox.source, name=name, document=_document("a"), roles=["no-such-role-x"])
    assert run.rc != 0
    assert "attach_role_policy on role 'no-such-role-x'" in result["msg"]
    assert "NoSuchEntity" in result["msg"]


def test_absent_detaches_everywhere_and_deletes_all_versions(sandbox):
    name, iam = _unique(), _iam(sandbox.source)
    role = _unique("crr-role")
    run_playbook(_play({"name": "r", "backbeat.crr.crr_role": {**_connection(sandbox.source), "name": role}}))
    _run(sandbox.source, name=name, document=_document("a"), roles=[role])
    _run(sandbox.source, name=name, document=_document("b"))
    arn = _policy_arn(sandbox.source, name)

    run, result = _run(sandbox.source, check=True, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is True
    assert _policy_or_none(iam, arn) is not None and _attached_roles(iam, arn) == [role]

    run, result = _run(sandbox.source, name=name, state="absent")
    assert run.rc == 0 and result["changed"] is True
    assert _policy_or_none(iam, arn) is None
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []

    for check in (False, True):
        run, result = _run(sandbox.source, check=check, name=name, state="absent")
        assert run.rc == 0 and result["changed"] is False

    # the role module's absent then finds a bare role
    run = run_playbook(_play({"name": "r", "backbeat.crr.crr_role": {**_connection(sandbox.source), "name": role,
                                                                    "state": "absent"}}))
    assert run.rc == 0 and run.result("r")["changed"] is True


def _statement(**overrides):
    statement = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}
    statement.update(overrides)
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.mark.parametrize("options, message", [
    ({"document": '{"Version": "2012-10-17", "Statement": '}, "document: not valid JSON"),
    ({"document": {"Version": "2012-10-17"}}, "document: the document has no 'Statement'"),
    ({"document": _statement(Effect="Permit")}, "document: statement 1: Effect must be 'Allow' or 'Deny'"),
    ({"document": _statement(Action="ListBucket")}, "document: statement 1: action 'ListBucket' has no service prefix"),
    ({"document": _statement(Resource="my-bucket")},
     "document: statement 1: resource 'my-bucket' is neither an ARN nor '*'"),
    ({"document": _statement(), "roles": ["bad role!"]}, "roles: 'bad role!' is not a valid IAM role name"),
    ({"document": _statement(), "source_bucket": "src"}, "document: give either document or the generator options"),
    ({"source_bucket": "src"}, "target_bucket: the generated document needs source_bucket and target_bucket"),
    ({"target_type": "aws_s3", "target_bucket": "tgt"}, "source_bucket: the generated document needs"),
    ({}, "document: state=present needs document, or source_bucket and target_bucket"),
    ({"source_bucket": "arn:aws:s3:::src", "target_bucket": "tgt"}, "source_bucket: 'arn:aws:s3:::src' is not"),
])
def test_bad_input_fails_before_any_call_and_creates_nothing(sandbox, options, message):
    name, iam = _unique(), _iam(sandbox.source)
    run, result = _run(sandbox.source, name=name, **options)
    assert run.rc != 0 and result["failed"]
    assert message in result["msg"]
    assert _policy_or_none(iam, _policy_arn(sandbox.source, name)) is None
    # against an unreachable endpoint the same message: no API call came first
    run, result = _run(UNREACHABLE, name=name, **options)
    assert run.rc != 0 and message in result["msg"]
