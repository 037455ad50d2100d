# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""IAM policy documents: load, validate, normalise, compare, and generate Backbeat's.

Nothing here talks to a server: every check runs before the first API call, because
moto (and sometimes Vault) accept documents that AWS would reject.
"""

from __future__ import annotations

import copy
import json
import re
from urllib.parse import unquote

# IAM's documented default when a document carries no Version.
DEFAULT_POLICY_VERSION = "2008-10-17"
GENERATED_POLICY_VERSION = "2012-10-17"

TARGET_TYPES = ("scality", "aws_s3")

_ACTION = re.compile(r"^[A-Za-z0-9-]+:[A-Za-z0-9*?]+$")
# Looser than arn.parse_arn on purpose: policy resources may wildcard any field
# (arn:aws:ec2:*:*:instance/*) and may use policy variables.
_RESOURCE_ARN = re.compile(r"^arn:[^:\s]+:[^:\s]*:[^:\s]*:[^:\s]*:\S+$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$")
_POLICY_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,128}$")
_PATH = re.compile(r"^(/|/[\x21-\x7e]{0,510}/)$")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")

# Elements whose value may be a string or a list of strings.
_LIST_ELEMENTS = ("Action", "NotAction", "Resource", "NotResource")
_PRINCIPAL_ELEMENTS = ("Principal", "NotPrincipal")


class PolicyError(ValueError):
    """Invalid user input; the message starts with the option name and says the fix."""


# ---------------------------------------------------------------- loading


def load_document(value, option):
    """The policy as a dict, from a dict or a JSON string (URL-encoded, as IAM returns, is accepted)."""
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if not isinstance(value, str):
        raise PolicyError("%s: expected a dict or a JSON string, got %s" % (option, type(value).__name__))
    text = value.strip()
    if text.startswith("%7B") or text.startswith("%7b"):
        text = unquote(text)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PolicyError("%s: not valid JSON (%s); give a dict or a JSON object string" % (option, exc)) from None
    if not isinstance(document, dict):
        raise PolicyError("%s: the JSON must be an object with a Statement, got %s" % (option, type(document).__name__))
    return document


# ---------------------------------------------------------------- validation


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _statements(document, option):
    if "Statement" not in document:
        raise PolicyError("%s: the document has no 'Statement'; add a list of statements" % option)
    statements = _as_list(document["Statement"])
    if not statements:
        raise PolicyError("%s: 'Statement' is empty; add at least one statement" % option)
    for index, statement in enumerate(statements, 1):
        if not isinstance(statement, dict):
            raise PolicyError("%s: statement %d must be an object, got %s" % (option, index, type(statement).__name__))
    return statements


def _check_strings(option, where, element, values):
    for value in values:
        if not isinstance(value, str) or not value:
            raise PolicyError("%s: %s: '%s' must hold non-empty strings, got %r" % (option, where, element, value))


def _check_actions(option, where, statement):
    keys = [k for k in ("Action", "NotAction") if k in statement]
    if not keys:
        raise PolicyError("%s: %s has no 'Action'; add one such as 's3:GetObjectVersion'" % (option, where))
    for key in keys:
        actions = _as_list(statement[key])
        _check_strings(option, where, key, actions)
        for action in actions:
            if action != "*" and not _ACTION.match(action):
                raise PolicyError(
                    "%s: %s: action %r has no service prefix; write it as '<service>:<action>', e.g. 's3:%s'"
                    % (option, where, action, action.split(":")[-1] or "GetObject")
                )


def _check_resources(option, where, statement, required):
    keys = [k for k in ("Resource", "NotResource") if k in statement]
    if required and not keys:
        raise PolicyError("%s: %s has no 'Resource'; add an ARN such as 'arn:aws:s3:::bucket/*' or '*'"
                          % (option, where))
    for key in keys:
        resources = _as_list(statement[key])
        _check_strings(option, where, key, resources)
        for resource in resources:
            if resource != "*" and not _RESOURCE_ARN.match(resource):
                raise PolicyError(
                    "%s: %s: resource %r is neither an ARN nor '*'; write e.g. 'arn:aws:s3:::%s'"
                    % (option, where, resource, resource)
                )


def _check_principal(option, where, statement):
    keys = [k for k in _PRINCIPAL_ELEMENTS if k in statement]
    if not keys:
        raise PolicyError("%s: %s has no 'Principal'; a trust policy names who may assume the role, "
                          "e.g. {'Service': 'backbeat'}" % (option, where))
    for key in keys:
        principal = statement[key]
        if principal == "*":
            continue
        if not isinstance(principal, dict) or not principal:
            raise PolicyError("%s: %s: '%s' must be '*' or a map such as {'Service': 'backbeat'}"
                              % (option, where, key))
        for kind, values in principal.items():
            _check_strings(option, where, "%s.%s" % (key, kind), _as_list(values))


def validate_policy(document, option, trust=False):
    """Raise PolicyError when document is not a valid identity (or, with trust, role trust) policy."""
    version = document.get("Version", DEFAULT_POLICY_VERSION)
    if version not in ("2012-10-17", "2008-10-17"):
        raise PolicyError("%s: Version %r is not an IAM policy version; use '2012-10-17'" % (option, version))
    for index, statement in enumerate(_statements(document, option), 1):
        where = "statement %d" % index
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError("%s: %s: Effect must be 'Allow' or 'Deny', got %r" % (option, where, effect))
        _check_actions(option, where, statement)
        if trust:
            _check_principal(option, where, statement)
            _check_resources(option, where, statement, required=False)
        else:
            if any(k in statement for k in _PRINCIPAL_ELEMENTS):
                raise PolicyError("%s: %s names a Principal; a managed (identity) policy must not, remove it"
                                  % (option, where))
            _check_resources(option, where, statement, required=True)
    return document


def validate_name(value, option, kind="role"):
    """Raise PolicyError unless value is a valid IAM role (or policy) name."""
    pattern, limit = (_ROLE_NAME, 64) if kind == "role" else (_POLICY_NAME, 128)
    if not isinstance(value, str) or not pattern.match(value):
        raise PolicyError(
            "%s: %r is not a valid IAM %s name; use 1-%d characters among letters, digits and '+=,.@_-'"
            % (option, value, kind, limit)
        )
    return value


def validate_path(value, option):
    """Raise PolicyError unless value is an IAM path ('/' or '/a/b/')."""
    if not isinstance(value, str) or not _PATH.match(value):
        raise PolicyError("%s: %r is not an IAM path; it must start and end with '/', e.g. '/backbeat/'"
                          % (option, value))
    return value


def validate_bucket(value, option):
    """Raise PolicyError unless value looks like an S3 bucket name (no ARN, no wildcard)."""
    if not isinstance(value, str) or not _BUCKET.match(value):
        raise PolicyError("%s: %r is not a bucket name; give the bare name such as 'source-bucket' (no ARN, no '/')"
                          % (option, value))
    return value


# ---------------------------------------------------------------- normalisation


def _string_set(values):
    return sorted(set(_as_list(values)))


def _account_root(principal):
    if isinstance(principal, str) and _ACCOUNT_ID.match(principal):
        return "arn:aws:iam::%s:root" % principal
    return principal


def _normalize_principal(principal):
    if principal == "*":
        return "*"
    normal = {}
    for kind, value in principal.items():
        values = _as_list(value)
        if kind == "AWS":
            # IAM stores a bare account id as its root ARN.
            values = [_account_root(v) for v in values]
        normal[kind] = sorted(set(values))
    return normal


def _normalize_condition(condition):
    return {
        operator: {key: _string_set([str(v) for v in _as_list(value)]) for key, value in (tests or {}).items()}
        for operator, tests in condition.items()
    }


def _normalize_statement(statement):
    normal = {}
    for key, value in statement.items():
        if key in ("Action", "NotAction"):
            # Action names are case-insensitive in IAM.
            normal[key] = _string_set([a.lower() if isinstance(a, str) else a for a in _as_list(value)])
        elif key in _LIST_ELEMENTS:
            normal[key] = _string_set(value)
        elif key in _PRINCIPAL_ELEMENTS:
            normal[key] = _normalize_principal(value)
        elif key == "Condition" and isinstance(value, dict):
            normal[key] = _normalize_condition(value)
        elif key == "Sid" and value == "":
            continue
        else:
            normal[key] = value
    return normal


def normalize_policy(document):
    """A canonical form: Version defaulted, scalars as sorted lists, statements sorted.

    Two documents IAM treats the same have equal canonical forms. Only for comparing:
    what is sent to IAM is always the user's own document.
    """
    if isinstance(document, str):
        document = load_document(document, "document")
    normal = {k: v for k, v in document.items() if k != "Statement"}
    normal.setdefault("Version", DEFAULT_POLICY_VERSION)
    statements = [_normalize_statement(s) for s in _as_list(document.get("Statement", []))]
    normal["Statement"] = sorted(statements, key=lambda s: json.dumps(s, sort_keys=True))
    return normal


def policies_differ(current, desired):
    """True when IAM would treat the two documents differently (None means no document)."""
    if current is None or desired is None:
        return current is not desired
    return normalize_policy(current) != normalize_policy(desired)


# ---------------------------------------------------------------- generators


def trust_policy(services):
    """The role trust policy letting the given service principal(s) assume the role (Backbeat's by default)."""
    services = list(services)
    return {
        "Version": GENERATED_POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": services[0] if len(services) == 1 else services},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def replication_policy(source_bucket, target_bucket, target_type="scality"):
    """The replication policy of Backbeat's setup (ARCHITECTURE §1 step 2).

    A cloud (aws_s3) target also needs the tagging actions, because tags travel with the objects.
    """
    if target_type not in TARGET_TYPES:
        raise PolicyError("target_type: %r is not one of %s" % (target_type, ", ".join(TARGET_TYPES)))
    cloud = target_type == "aws_s3"
    source_object_actions = ["s3:GetObjectVersion", "s3:GetObjectVersionAcl"]
    target_actions = ["s3:ReplicateObject", "s3:ReplicateDelete"]
    if cloud:
        source_object_actions.append("s3:GetObjectVersionTagging")
        target_actions.append("s3:ReplicateTags")
    return {
        "Version": GENERATED_POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": source_object_actions,
                "Resource": ["arn:aws:s3:::%s/*" % source_bucket],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetReplicationConfiguration"],
                "Resource": ["arn:aws:s3:::%s" % source_bucket],
            },
            {
                "Effect": "Allow",
                "Action": target_actions,
                "Resource": "arn:aws:s3:::%s/*" % target_bucket,
            },
        ],
    }
