# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""IAM calls shared by crr_role and crr_policy, and normalisers of their results.

Every call goes through errors.call() or
paginate(): a botocore failure raises ModuleFailure with one message naming the call and the
entity. Throttling is already retried with jittered backoff by the client (connection.client,
botocore standard retry mode).
"""

from __future__ import annotations

import json
from urllib.parse import unquote

from ansible_collections.backbeat.crr.plugins.module_utils.arn import parse_arn
from ansible_collections.backbeat.crr.plugins.module_utils.errors import AWS_ERRORS, aws_failure, call

# IAM keeps at most 5 versions of a managed policy.
MAX_POLICY_VERSIONS = 5


def paginate(client, method, key, entity, **kwargs):
    """Every item under key of all pages of client.<method>(**kwargs)."""
    items = []
    try:
        for page in client.get_paginator(method).paginate(**kwargs):
            items.extend(page.get(key, []))
    except AWS_ERRORS as exc:
        raise aws_failure(exc, method, entity) from None
    return items


def decode_document(document):
    """A policy document as a dict: boto3 decodes AWS's, other IAM servers may send URL-encoded JSON."""
    if document is None or isinstance(document, dict):
        return document
    text = document if document.lstrip().startswith("{") else unquote(document)
    return json.loads(text)


# ---------------------------------------------------------------- roles


def role_entity(name):
    return "role '%s'" % name


def get_role(client, name):
    """The role as returned by GetRole (document decoded), or None when it does not exist."""
    answer = call(client, "get_role", role_entity(name), none_for=("NoSuchEntity",), RoleName=name)
    if answer is None:
        return None
    role = answer["Role"]
    role["AssumeRolePolicyDocument"] = decode_document(role.get("AssumeRolePolicyDocument"))
    return role


def predicted_role_arn(sts, path, name):
    """The ARN a role about to be created will have (check mode), or None when the account is unknown.

    Later tasks template it (crr_policy roles, replication Role), so check mode of a whole setup
    on a fresh site must not hand them a null. Best effort: an endpoint without STS gives None.
    """
    try:
        caller = sts.get_caller_identity()["Arn"]
    except AWS_ERRORS:
        return None
    parts = parse_arn(caller)
    if not parts or not parts["account_id"]:
        return None
    return "arn:%s:iam::%s:role%s%s" % (parts["partition"], parts["account_id"], path, name)


def normalize_role(role):
    """The module's return values for a GetRole/CreateRole result (None when there is no role)."""
    if not role:
        return dict(arn=None, role_id=None, role_name=None, path=None, description=None,
                    assume_role_policy_document=None)
    return dict(
        arn=role.get("Arn"),
        role_id=role.get("RoleId"),
        role_name=role.get("RoleName"),
        path=role.get("Path"),
        description=role.get("Description"),
        assume_role_policy_document=decode_document(role.get("AssumeRolePolicyDocument")),
    )


def attached_policy_arns(client, role_name):
    """ARNs of the managed policies attached to the role."""
    policies = paginate(client, "list_attached_role_policies", "AttachedPolicies",
                        role_entity(role_name), RoleName=role_name)
    return [p["PolicyArn"] for p in policies]


def inline_policy_names(client, role_name):
    """Names of the role's inline policies."""
    return paginate(client, "list_role_policies", "PolicyNames", role_entity(role_name), RoleName=role_name)


# ---------------------------------------------------------------- managed policies


def policy_entity(name_or_arn):
    return "policy '%s'" % name_or_arn


def find_policy(client, name):
    """The customer managed policy of that name (GetPolicy shape), or None.

    Names are unique per account whatever the path, and the account id is not known
    without another call, so the policy is found by listing the local ones.
    """
    for policy in paginate(client, "list_policies", "Policies", policy_entity(name), Scope="Local"):
        if policy["PolicyName"] == name:
            return call(client, "get_policy", policy_entity(policy["Arn"]), PolicyArn=policy["Arn"])["Policy"]
    return None


def policy_document(client, arn, version_id):
    """The document of one version of the policy, as a dict."""
    version = call(client, "get_policy_version", policy_entity(arn), PolicyArn=arn, VersionId=version_id)
    return decode_document(version["PolicyVersion"]["Document"])


def _version_order(version):
    number = version["VersionId"].lstrip("v")
    return (version.get("CreateDate") is None, version.get("CreateDate"), int(number) if number.isdigit() else 0)


def policy_versions(client, arn):
    """The policy's versions, oldest first."""
    versions = paginate(client, "list_policy_versions", "Versions", policy_entity(arn), PolicyArn=arn)
    return sorted(versions, key=_version_order)


def oldest_non_default_version(versions):
    """The VersionId to delete to make room for a new version, or None."""
    for version in versions:
        if not version.get("IsDefaultVersion"):
            return version["VersionId"]
    return None


def policy_entities(client, arn):
    """Sorted names of what the policy is attached to: {'roles': [...], 'users': [...], 'groups': [...]}."""
    entities = {"roles": [], "users": [], "groups": []}
    try:
        for page in client.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn):
            entities["roles"] += [r["RoleName"] for r in page.get("PolicyRoles", [])]
            entities["users"] += [u["UserName"] for u in page.get("PolicyUsers", [])]
            entities["groups"] += [g["GroupName"] for g in page.get("PolicyGroups", [])]
    except AWS_ERRORS as exc:
        raise aws_failure(exc, "list_entities_for_policy", policy_entity(arn)) from None
    return {kind: sorted(set(names)) for kind, names in entities.items()}
