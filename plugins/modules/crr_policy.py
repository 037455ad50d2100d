#!/usr/bin/python
# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: crr_policy
short_description: IAM managed policy granting replication, attached to the replication roles
version_added: 0.1.0
description:
  - Creates, updates or deletes a customer managed IAM policy on AWS IAM, Scality Vault (port 8600) or
    any IAM-compatible endpoint, and attaches it to roles.
  - The document is given, or generated from O(source_bucket), O(target_bucket) and O(target_type)
    exactly as Backbeat's replication setup writes it.
  - A document that differs from the default version (compared order-insensitively) becomes a new
    default version; when the policy already has 5 versions the oldest non-default one is deleted first.
  - With O(state=absent) the policy is detached from every role, user and group, its non-default
    versions are deleted, then the policy.
author:
  - backbeat.crr contributors (@backbeat-crr)
options:
  name:
    description:
      - Name of the managed policy (unique in the account whatever its path).
    type: str
    required: true
  path:
    description:
      - IAM path of the policy, used when it is created. IAM cannot change it afterwards.
    type: str
    default: /
  description:
    description:
      - Description of the policy, used when it is created. IAM cannot change it afterwards.
    type: str
  document:
    description:
      - The policy document, as a dict or a JSON string.
      - Mutually exclusive with O(source_bucket), O(target_bucket) and O(target_type).
    type: json
  source_bucket:
    description:
      - Source bucket of the replication; with O(target_bucket) the document is generated.
    type: str
  target_bucket:
    description:
      - Target bucket of the replication; with O(source_bucket) the document is generated.
    type: str
  target_type:
    description:
      - Type of the replication site. C(aws_s3) (a cloud target) adds the tagging actions
        C(s3:GetObjectVersionTagging) and C(s3:ReplicateTags).
      - Taken as C(scality) when omitted while generating the document.
    type: str
    choices: [scality, aws_s3]
  roles:
    description:
      - Roles (names or ARNs) the policy is attached to.
      - When omitted, attachments are left as they are.
    type: list
    elements: str
  purge_roles:
    description:
      - Detach the policy from roles not listed in O(roles). Has no effect when O(roles) is omitted.
    type: bool
    default: false
  state:
    description:
      - Whether the policy exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - backbeat.crr.connection
notes:
  - Supports check mode and diff mode (before/after document and attached roles).
"""

EXAMPLES = r"""
- name: Replication policy of the source site, attached to the replication role
  backbeat.crr.crr_policy:
    name: backbeat-replication
    source_bucket: source-bucket
    target_bucket: target-bucket
    roles: [backbeat-replication]
    iam_endpoint_url: http://vault.source:8600
    profile: backbeat-source

- name: Policy for a cloud (AWS S3) target, attached to this role only
  backbeat.crr.crr_policy:
    name: backbeat-replication-aws
    source_bucket: source-bucket
    target_bucket: aws-target-bucket
    target_type: aws_s3
    roles: [arn:aws:iam::111111111111:role/backbeat-replication]
    purge_roles: true

- name: A policy document given in full
  backbeat.crr.crr_policy:
    name: read-source
    document:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: [s3:ListBucket]
          Resource: arn:aws:s3:::source-bucket

- name: Detach from every role and delete
  backbeat.crr.crr_policy:
    name: backbeat-replication
    state: absent
"""

RETURN = r"""
arn:
  description: ARN of the policy; null when absent or about to be created in check mode.
  returned: always
  type: str
  sample: arn:aws:iam::111111111111:policy/backbeat-replication
policy_id:
  description: Unique id of the policy; null when absent or about to be created in check mode.
  returned: always
  type: str
  sample: ANPAEXAMPLE1234567890
default_version_id:
  description: Default version of the policy; null when absent or not yet known in check mode.
  returned: always
  type: str
  sample: v2
document:
  description: The default version's document; null when absent.
  returned: always
  type: dict
  sample: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"],
           "Resource": ["arn:aws:s3:::source-bucket"]}]}
attached_roles:
  description: Names of the roles the policy is attached to, sorted.
  returned: always
  type: list
  elements: str
  sample: [backbeat-replication]
"""

import json

from ansible_collections.backbeat.crr.plugins.module_utils.arn import is_role_arn
from ansible_collections.backbeat.crr.plugins.module_utils.errors import call
from ansible_collections.backbeat.crr.plugins.module_utils.iam import (
    MAX_POLICY_VERSIONS,
    find_policy,
    oldest_non_default_version,
    policy_document,
    policy_entities,
    policy_entity,
    policy_versions,
    role_entity,
)
from ansible_collections.backbeat.crr.plugins.module_utils.modules import CrrModule, ModuleFailure
from ansible_collections.backbeat.crr.plugins.module_utils.policy import (
    PolicyError,
    load_document,
    policies_differ,
    replication_policy,
    validate_bucket,
    validate_name,
    validate_path,
    validate_policy,
)

GENERATOR_OPTIONS = ("source_bucket", "target_bucket", "target_type")


def desired_document(params):
    """The document asked for (given or generated), validated; raises PolicyError naming the option."""
    generator = [o for o in GENERATOR_OPTIONS if params[o] is not None]
    if params["document"] is not None:
        if generator:
            raise PolicyError("document: give either document or the generator options (%s), not both; "
                              "remove %s" % (", ".join(GENERATOR_OPTIONS), ", ".join(generator)))
        document = load_document(params["document"], "document")
        return validate_policy(document, "document")
    missing = [o for o in ("source_bucket", "target_bucket") if params[o] is None]
    if missing:
        if generator:
            raise PolicyError("%s: the generated document needs source_bucket and target_bucket; add %s"
                              % (missing[0], " and ".join(missing)))
        raise PolicyError("document: state=present needs document, or source_bucket and target_bucket to generate it")
    validate_bucket(params["source_bucket"], "source_bucket")
    validate_bucket(params["target_bucket"], "target_bucket")
    return replication_policy(params["source_bucket"], params["target_bucket"], params["target_type"] or "scality")


def role_name(role, option="roles"):
    """The role name of a name or role ARN; raises PolicyError naming the option."""
    if role.startswith("arn:"):
        if not is_role_arn(role):
            raise PolicyError("%s: %r is not a role ARN; give 'arn:aws:iam::<account>:role/<name>' or a role name"
                              % (option, role))
        role = role.rsplit("/", 1)[-1]
    return validate_name(role, option, kind="role")


def validate_params(params):
    """Check every option before any API call; returns (document or None, role names or None)."""
    validate_name(params["name"], "name", kind="policy")
    validate_path(params["path"], "path")
    roles = None
    if params["roles"] is not None:
        roles = sorted(set(role_name(r) for r in params["roles"]))
    if params["state"] == "absent":
        return None, roles
    return desired_document(params), roles


def create_policy(iam, check_mode, params, document):
    """Create the policy; returns it in GetPolicy shape (a prediction without ids in check mode)."""
    if check_mode:
        return dict(PolicyName=params["name"], Arn=None, PolicyId=None, DefaultVersionId=None)
    kwargs = dict(PolicyName=params["name"], Path=params["path"], PolicyDocument=json.dumps(document))
    if params["description"] is not None:
        kwargs["Description"] = params["description"]
    return call(iam, "create_policy", policy_entity(params["name"]), **kwargs)["Policy"]


def prune_versions(iam, check_mode, arn):
    """Delete the oldest non-default version when IAM's version limit is reached; returns changed."""
    versions = policy_versions(iam, arn)
    if len(versions) < MAX_POLICY_VERSIONS:
        return False
    oldest = oldest_non_default_version(versions)
    if not check_mode:
        call(iam, "delete_policy_version", "%s version %s" % (policy_entity(arn), oldest),
             PolicyArn=arn, VersionId=oldest)
    return True


def update_document(iam, check_mode, policy, current, document):
    """Make document the default version when it differs for IAM; returns changed."""
    if not policies_differ(current, document):
        return False
    prune_versions(iam, check_mode, policy["Arn"])
    if not check_mode:
        version = call(iam, "create_policy_version", policy_entity(policy["Arn"]),
                       PolicyArn=policy["Arn"], PolicyDocument=json.dumps(document), SetAsDefault=True)
        policy["DefaultVersionId"] = version["PolicyVersion"]["VersionId"]
    else:
        policy["DefaultVersionId"] = None
    return True


def attach_roles(iam, check_mode, arn, current, wanted):
    """Attach the policy to the wanted roles not yet attached; returns the roles attached now."""
    missing = [r for r in wanted if r not in current]
    if not check_mode:
        for role in missing:
            call(iam, "attach_role_policy", "%s and %s" % (role_entity(role), policy_entity(arn or "")),
                 RoleName=role, PolicyArn=arn)
    return missing


def detach_roles(iam, check_mode, arn, roles):
    """Detach the policy from these roles; returns them."""
    if not check_mode:
        for role in roles:
            call(iam, "detach_role_policy", "%s and %s" % (role_entity(role), policy_entity(arn)),
                 RoleName=role, PolicyArn=arn)
    return list(roles)


def update_attachments(iam, check_mode, arn, current, wanted, purge):
    """Attach to wanted roles, and with purge detach from the others; returns (changed, attached roles)."""
    if wanted is None:
        return False, current
    attached = attach_roles(iam, check_mode, arn, current, wanted)
    detached = detach_roles(iam, check_mode, arn, [r for r in current if r not in wanted]) if purge else []
    roles = sorted((set(current) | set(attached)) - set(detached))
    return bool(attached or detached), roles


def detach_everywhere(iam, check_mode, arn, entities):
    """Detach the policy from every role, user and group (IAM refuses to delete it otherwise); returns changed."""
    if not check_mode:
        for kind, method, key in (("roles", "detach_role_policy", "RoleName"),
                                  ("users", "detach_user_policy", "UserName"),
                                  ("groups", "detach_group_policy", "GroupName")):
            for name in entities[kind]:
                call(iam, method, "%s '%s' and %s" % (kind[:-1], name, policy_entity(arn)),
                     PolicyArn=arn, **{key: name})
    return any(entities.values())


def delete_policy(iam, check_mode, arn):
    """Delete the non-default versions then the policy; returns changed."""
    if not check_mode:
        for version in policy_versions(iam, arn):
            if not version.get("IsDefaultVersion"):
                call(iam, "delete_policy_version", "%s version %s" % (policy_entity(arn), version["VersionId"]),
                     PolicyArn=arn, VersionId=version["VersionId"])
        call(iam, "delete_policy", policy_entity(arn), PolicyArn=arn)
    return True


def ensure_present(module, iam, params, document, roles):
    """Create or update the policy and its attachments; returns (changed, before, after)."""
    policy = find_policy(iam, params["name"])
    if policy is None:
        before = None
        policy = create_policy(iam, module.check_mode, params, document)
        changed, current_roles = True, []
    else:
        check_immutable(module, policy, params)
        current = policy_document(iam, policy["Arn"], policy["DefaultVersionId"])
        current_roles = policy_entities(iam, policy["Arn"])["roles"]
        before = dict(policy=dict(policy), document=current, attached_roles=current_roles)
        changed = update_document(iam, module.check_mode, policy, current, document)
        if not changed:
            document = current  # equivalent for IAM: report what IAM holds
    attached_changed, attached = update_attachments(iam, module.check_mode, policy["Arn"], current_roles,
                                                    roles, params["purge_roles"])
    after = dict(policy=policy, document=document, attached_roles=attached)
    return changed or attached_changed, before, after


def check_immutable(module, policy, params):
    """IAM cannot move a policy to another path: fail rather than silently keep the old one."""
    if policy.get("Path", "/") != params["path"]:
        raise ModuleFailure(
            "path: policy '%s' exists with path %s and IAM cannot change it; set path: %s or delete the policy "
            "(state: absent) first" % (params["name"], policy["Path"], policy["Path"])
        )
    if params["description"] is not None and params["description"] != policy.get("Description", ""):
        module.warn("description: IAM cannot change the description of the existing policy '%s'; "
                    "it is left as %r" % (params["name"], policy.get("Description", "")))


def ensure_absent(module, iam, params):
    """Detach the policy everywhere and delete it; returns (changed, before, None)."""
    policy = find_policy(iam, params["name"])
    if policy is None:
        return False, None, None
    arn = policy["Arn"]
    entities = policy_entities(iam, arn)
    before = dict(policy=policy, document=policy_document(iam, arn, policy["DefaultVersionId"]),
                  attached_roles=entities["roles"])
    detach_everywhere(iam, module.check_mode, arn, entities)
    delete_policy(iam, module.check_mode, arn)
    return True, before, None


def result_of(state):
    if state is None:
        return dict(arn=None, policy_id=None, default_version_id=None, document=None, attached_roles=[])
    policy = state["policy"]
    return dict(
        arn=policy.get("Arn"),
        policy_id=policy.get("PolicyId"),
        default_version_id=policy.get("DefaultVersionId"),
        document=state["document"],
        attached_roles=state["attached_roles"],
    )


def diff_view(state):
    if state is None:
        return {}
    return dict(document=state["document"], attached_roles=state["attached_roles"])


ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    path=dict(type="str", default="/"),
    description=dict(type="str"),
    document=dict(type="json"),
    source_bucket=dict(type="str"),
    target_bucket=dict(type="str"),
    target_type=dict(type="str", choices=["scality", "aws_s3"]),
    roles=dict(type="list", elements="str"),
    purge_roles=dict(type="bool", default=False),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def apply(module):
    """The policy made and attached as the options say; returns the module's result."""
    params = module.params
    try:
        document, roles = validate_params(params)
    except PolicyError as exc:
        raise ModuleFailure(str(exc)) from None
    iam = module.client("iam")
    if params["state"] == "present":
        changed, before, after = ensure_present(module, iam, params, document, roles)
    else:
        changed, before, after = ensure_absent(module, iam, params)
    result = dict(changed=changed, **result_of(after))
    if module.diff:
        result["diff"] = dict(before=diff_view(before), after=diff_view(after))
    return result


def main():
    CrrModule(ARGUMENT_SPEC).run(apply)


if __name__ == "__main__":
    main()
