#!/usr/bin/python
# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: crr_role
short_description: IAM role assumed by the replication service
version_added: 0.1.0
description:
  - Creates, updates or deletes the IAM role that Backbeat-style replication assumes, on AWS IAM,
    Scality Vault (port 8600) or any IAM-compatible endpoint.
  - The trust policy is generated for service principals (C(backbeat) by default) or given in full,
    and compared with the role's one order-insensitively, as IAM normalises them (Version defaulted,
    one-element lists equal to scalars). The role is updated only on a real difference.
  - With O(state=absent) the managed policies are detached and the inline ones deleted before the role.
author:
  - backbeat.crr contributors (@backbeat-crr)
options:
  name:
    description:
      - Name of the role.
    type: str
    required: true
  path:
    description:
      - IAM path of the role. IAM cannot change it on an existing role.
    type: str
    default: /
  description:
    description:
      - Description of the role. Left as it is when omitted.
    type: str
  trust_services:
    description:
      - Service principals allowed to assume the role; the trust policy is generated from them.
      - Mutually exclusive with O(assume_role_policy_document).
    type: list
    elements: str
    default: [backbeat]
  assume_role_policy_document:
    description:
      - The whole trust policy, as a dict or a JSON string, instead of O(trust_services).
    type: json
  state:
    description:
      - Whether the role exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - backbeat.crr.connection
notes:
  - Supports check mode and diff mode (before/after trust policy and description).
"""

EXAMPLES = r"""
- name: Role assumed by Backbeat on the source site (Scality Vault)
  backbeat.crr.crr_role:
    name: backbeat-replication
    iam_endpoint_url: http://vault.source:8600
    profile: backbeat-source
  register: source_role

- name: Role with a trust policy given in full
  backbeat.crr.crr_role:
    name: backbeat-replication
    path: /backbeat/
    description: Assumed by the replication worker
    assume_role_policy_document:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {Service: [backbeat, s3.amazonaws.com]}
          Action: sts:AssumeRole

- name: Remove the role and its policy attachments
  backbeat.crr.crr_role:
    name: backbeat-replication
    state: absent
"""

RETURN = r"""
arn:
  description:
    - ARN of the role; null when absent.
    - In check mode, for a role about to be created, the ARN it will have (from STS GetCallerIdentity),
      or null when the endpoint has no STS.
  returned: always
  type: str
  sample: arn:aws:iam::111111111111:role/backbeat-replication
role_id:
  description: Unique id of the role; null when absent or about to be created in check mode.
  returned: always
  type: str
  sample: AROARTXV5AHD7GSYKPALI
role_name:
  description: Name of the role; null when absent.
  returned: always
  type: str
  sample: backbeat-replication
path:
  description: IAM path of the role; null when absent.
  returned: always
  type: str
  sample: /
description:
  description: Description of the role; null when absent or without description.
  returned: always
  type: str
  sample: Assumed by the replication worker
assume_role_policy_document:
  description: Trust policy of the role; null when absent.
  returned: always
  type: dict
  sample: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "backbeat"},
           "Action": "sts:AssumeRole"}]}
"""

import json

from ansible_collections.backbeat.crr.plugins.module_utils.errors import call
from ansible_collections.backbeat.crr.plugins.module_utils.iam import (
    attached_policy_arns,
    get_role,
    inline_policy_names,
    normalize_role,
    predicted_role_arn,
    role_entity,
)
from ansible_collections.backbeat.crr.plugins.module_utils.modules import CrrModule, ModuleFailure
from ansible_collections.backbeat.crr.plugins.module_utils.policy import (
    PolicyError,
    load_document,
    policies_differ,
    trust_policy,
    validate_name,
    validate_path,
    validate_policy,
)


def desired_trust_policy(params):
    """The trust policy asked for, validated; raises PolicyError naming the option."""
    if params["assume_role_policy_document"] is not None:
        document = load_document(params["assume_role_policy_document"], "assume_role_policy_document")
        return validate_policy(document, "assume_role_policy_document", trust=True)
    services = params["trust_services"]
    if not services or not all(isinstance(s, str) and s.strip() for s in services):
        raise PolicyError("trust_services: give at least one service principal, e.g. [backbeat]")
    return trust_policy(services)


def validate_params(params):
    """Check every option before any API call; returns the desired trust policy (None for absent)."""
    validate_name(params["name"], "name", kind="role")
    validate_path(params["path"], "path")
    if params["state"] == "absent":
        return None
    return desired_trust_policy(params)


def create_role(module, iam, check_mode, name, path, description, trust):
    """Create the role; returns the created role (a prediction in check mode)."""
    if check_mode:
        arn = predicted_role_arn(module.client("sts"), path, name)
        return dict(RoleName=name, Path=path, Description=description, AssumeRolePolicyDocument=trust, Arn=arn)
    kwargs = dict(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust))
    if description is not None:
        kwargs["Description"] = description
    return call(iam, "create_role", role_entity(name), **kwargs)["Role"]


def update_trust_policy(iam, check_mode, role, trust):
    """Replace the trust policy when it differs for IAM; returns changed."""
    if not policies_differ(role["AssumeRolePolicyDocument"], trust):
        return False
    if not check_mode:
        call(iam, "update_assume_role_policy", role_entity(role["RoleName"]),
             RoleName=role["RoleName"], PolicyDocument=json.dumps(trust))
    role["AssumeRolePolicyDocument"] = trust
    return True


def update_description(iam, check_mode, role, description):
    """Set the description when one is given and differs; returns changed."""
    if description is None or description == role.get("Description", ""):
        return False
    if not check_mode:
        call(iam, "update_role", role_entity(role["RoleName"]),
             RoleName=role["RoleName"], Description=description)
    role["Description"] = description
    return True


def check_path(role, path):
    """IAM cannot move a role: fail rather than silently keep the other path."""
    if role["Path"] != path:
        raise ModuleFailure(
            "path: role '%s' exists with path %s and IAM cannot change it; set path: %s or delete the role "
            "(state: absent) first" % (role["RoleName"], role["Path"], role["Path"])
        )


def detach_managed_policies(iam, check_mode, name):
    """Detach every managed policy from the role; returns changed."""
    arns = attached_policy_arns(iam, name)
    if not check_mode:
        for arn in arns:
            call(iam, "detach_role_policy", "%s and policy '%s'" % (role_entity(name), arn),
                 RoleName=name, PolicyArn=arn)
    return bool(arns)


def delete_inline_policies(iam, check_mode, name):
    """Delete every inline policy of the role; returns changed."""
    names = inline_policy_names(iam, name)
    if not check_mode:
        for policy_name in names:
            call(iam, "delete_role_policy", "%s inline policy '%s'" % (role_entity(name), policy_name),
                 RoleName=name, PolicyName=policy_name)
    return bool(names)


def delete_role(iam, check_mode, name):
    """Delete a role that has no policy left; returns changed."""
    if not check_mode:
        call(iam, "delete_role", role_entity(name), RoleName=name)
    return True


def ensure_present(module, iam, params, trust):
    """Create or update the role; returns (changed, before, after role dicts)."""
    role = get_role(iam, params["name"])
    if role is None:
        after = create_role(module, iam, module.check_mode, params["name"], params["path"],
                            params["description"], trust)
        return True, None, after
    check_path(role, params["path"])
    before = dict(role)
    changed = update_trust_policy(iam, module.check_mode, role, trust)
    changed |= update_description(iam, module.check_mode, role, params["description"])
    return changed, before, role


def ensure_absent(module, iam, params):
    """Detach, delete inline policies, delete the role; returns (changed, before, None)."""
    name = params["name"]
    role = get_role(iam, name)
    if role is None:
        return False, None, None
    detach_managed_policies(iam, module.check_mode, name)
    delete_inline_policies(iam, module.check_mode, name)
    delete_role(iam, module.check_mode, name)
    return True, role, None


def diff_view(role):
    if role is None:
        return {}
    return dict(
        role_name=role.get("RoleName"),
        path=role.get("Path"),
        description=role.get("Description"),
        assume_role_policy_document=role.get("AssumeRolePolicyDocument"),
    )


ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    path=dict(type="str", default="/"),
    description=dict(type="str"),
    trust_services=dict(type="list", elements="str", default=["backbeat"]),
    assume_role_policy_document=dict(type="json"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def apply(module):
    """The role made as the options say; returns the module's result."""
    params = module.params
    try:
        trust = validate_params(params)
    except PolicyError as exc:
        raise ModuleFailure(str(exc)) from None
    iam = module.client("iam")
    if params["state"] == "present":
        changed, before, after = ensure_present(module, iam, params, trust)
    else:
        changed, before, after = ensure_absent(module, iam, params)
    result = dict(changed=changed, **normalize_role(after))
    if module.diff:
        result["diff"] = dict(before=diff_view(before), after=diff_view(after))
    return result


def main():
    CrrModule(ARGUMENT_SPEC, mutually_exclusive=[["trust_services", "assume_role_policy_document"]]).run(apply)


if __name__ == "__main__":
    main()
