# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Bucket replication configurations: build from task options, validate per schema, normalise, compare.

Two schemas:

- ``cloudserver``: what Scality CloudServer accepts (Arsenal's ReplicationConfiguration): V1 prefix rules,
  prefixes that do not overlap, one destination bucket, two role ARNs for a Scality site and one for a
  cloud site, unique rule IDs of at most 255 characters, at most 1000 rules.
- ``aws``: the AWS S3 V2 rules (Priority, Filter with prefix and tags, DeleteMarkerReplication).

Comparison uses a normalised, flat form in which a V1 rule ``Prefix: ""`` and a V2 rule
``Filter: {Prefix: ""}`` with DeleteMarkerReplication Disabled are the same rule.
"""

from __future__ import annotations

import re

from ansible_collections.backbeat.crr.plugins.module_utils.arn import is_role_arn, parse_arn

MAX_RULES = 1000
MAX_RULE_ID = 255
MAX_PREFIX = 1024
SCHEMAS = ("cloudserver", "aws")

# Rule attributes this module manages; anything else found on a server rule is kept under "other" so that
# a configuration carrying attributes the task does not describe is seen as different (and replaced).
_KNOWN_RULE_KEYS = {"ID", "Priority", "Prefix", "Filter", "Status", "Destination", "DeleteMarkerReplication"}
_KNOWN_DESTINATION_KEYS = {"Bucket", "StorageClass"}
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ReplicationConfigError(ValueError):
    """Invalid task input; the message names the option and the fix."""


def bucket_arn(bucket):
    """'arn:aws:s3:::<bucket>' for a bucket name; an S3 ARN is returned unchanged."""
    return bucket if bucket.startswith("arn:") else "arn:aws:s3:::%s" % bucket


def role_string(role):
    """The Role element: one ARN, or source and target ARNs comma-joined (CloudServer's two-role form)."""
    if isinstance(role, str):
        role = role.split(",")
    return ",".join(part.strip() for part in role)


def is_v2_rule(rule):
    """True when a task rule uses any V2 attribute (priority, filter, delete_marker_replication)."""
    return any(rule.get(key) is not None for key in ("priority", "filter", "delete_marker_replication"))


# ---------------------------------------------------------------------------------------------- validation


def validate(role, rules, schema, site_types=None):
    """Raise ReplicationConfigError on the first input the target endpoint would reject.

    site_types maps site names (storage classes) to 'scality' or 'aws_s3' when known; the role count is
    checked against it for schema cloudserver.
    """
    if schema not in SCHEMAS:
        raise ReplicationConfigError("schema: must be one of %s, got %r" % (", ".join(SCHEMAS), schema))
    roles = _validate_role(role)
    _validate_rules_common(rules)
    if schema == "cloudserver":
        _validate_cloudserver(roles, rules, site_types or {})
    else:
        _validate_aws(roles, rules)


def _validate_role(role):
    roles = role_string(role).split(",") if role else []
    if not roles or not all(roles):
        raise ReplicationConfigError("role: give one IAM role ARN, or a list of two (source role, target role)")
    if len(roles) > 2:
        raise ReplicationConfigError("role: at most two ARNs (source role, target role), got %d" % len(roles))
    for arn in roles:
        if not is_role_arn(arn):
            raise ReplicationConfigError(
                "role: %r is not an IAM role ARN; use arn:aws:iam::<account-id>:role/<name>" % arn)
    return roles


def _validate_rules_common(rules):
    if not rules:
        raise ReplicationConfigError("rules: at least one rule is needed with state=present")
    if len(rules) > MAX_RULES:
        raise ReplicationConfigError("rules: at most %d rules per bucket, got %d" % (MAX_RULES, len(rules)))
    seen = {}
    for index, rule in enumerate(rules):
        where = "rules[%d]" % index
        rule_id = rule.get("id")
        if rule_id is not None:
            if not rule_id or len(rule_id) > MAX_RULE_ID:
                raise ReplicationConfigError(
                    "%s.id: must be 1 to %d characters, got %d" % (where, MAX_RULE_ID, len(rule_id)))
            if rule_id in seen:
                raise ReplicationConfigError(
                    "%s.id: %r is already the id of rules[%d]; rule ids must be unique"
                    % (where, rule_id, seen[rule_id]))
            seen[rule_id] = index
        if rule.get("status", "Enabled") not in ("Enabled", "Disabled"):
            raise ReplicationConfigError("%s.status: must be Enabled or Disabled" % where)
        prefix = rule.get("prefix") or ""
        if len(prefix) > MAX_PREFIX:
            raise ReplicationConfigError("%s.prefix: at most %d characters" % (where, MAX_PREFIX))
        _validate_destination(where, rule.get("destination_bucket"))


def _validate_destination(where, destination):
    if not destination:
        raise ReplicationConfigError("%s.destination_bucket: required (a bucket name or arn:aws:s3:::<bucket>)" % where)
    if destination.startswith("arn:"):
        parts = parse_arn(destination)
        if not parts or parts["service"] != "s3" or not parts["resource"] or "/" in parts["resource"]:
            raise ReplicationConfigError(
                "%s.destination_bucket: %r is not a bucket ARN; use arn:aws:s3:::<bucket>" % (where, destination))
    elif not _BUCKET_NAME.match(destination):
        raise ReplicationConfigError(
            "%s.destination_bucket: %r is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')"
            % (where, destination))


def _validate_cloudserver(roles, rules, site_types):
    for index, rule in enumerate(rules):
        for key in ("priority", "filter", "delete_marker_replication"):
            if rule.get(key) is not None:
                raise ReplicationConfigError(
                    "rules[%d].%s: schema cloudserver accepts V1 prefix rules only; use prefix, or set schema: aws"
                    % (index, key))
    _check_prefixes_do_not_overlap(rules)
    buckets = {bucket_arn(rule["destination_bucket"]) for rule in rules}
    if len(buckets) > 1:
        raise ReplicationConfigError(
            "rules: CloudServer replicates a bucket to one destination bucket; got %s" % ", ".join(sorted(buckets)))
    _check_role_count(roles, rules, site_types)


def _check_prefixes_do_not_overlap(rules):
    prefixes = [rule.get("prefix") or "" for rule in rules]
    for later in range(len(prefixes)):
        for earlier in range(later):
            a, b = prefixes[earlier], prefixes[later]
            if a.startswith(b) or b.startswith(a):
                raise ReplicationConfigError(
                    "rules[%d].prefix %r overlaps rules[%d].prefix %r (an empty prefix overlaps every prefix); "
                    "CloudServer needs prefixes that are not prefixes of each other" % (later, b, earlier, a))


def _check_role_count(roles, rules, site_types):
    sites = set()
    for rule in rules:
        sites.update(site for site in (rule.get("storage_class") or "").split(",") if site)
    if not sites and "" in site_types:
        sites.add("")  # no storage class: CloudServer uses the default replication endpoint
    unknown = [site for site in sorted(sites) if site and site_types and site not in site_types]
    if unknown:
        raise ReplicationConfigError(
            "rules.storage_class: site %s is not a replication endpoint (known: %s); add it with crr_endpoint"
            % (", ".join(unknown), ", ".join(sorted(s for s in site_types if s))))
    kinds = {site_types[site] for site in sites if site in site_types}
    if not kinds:
        return
    if "scality" in kinds and len(roles) != 2:
        raise ReplicationConfigError(
            "role: a Scality site needs exactly two role ARNs (source role, target role), got %d" % len(roles))
    if "scality" not in kinds and len(roles) != 1:
        raise ReplicationConfigError("role: a cloud site (aws_s3) takes exactly one role ARN, got %d" % len(roles))


def _validate_aws(roles, rules):
    if len(roles) != 1:
        raise ReplicationConfigError("role: schema aws takes exactly one role ARN, got %d" % len(roles))
    versions = {is_v2_rule(rule) for rule in rules}
    if len(versions) > 1:
        raise ReplicationConfigError(
            "rules: do not mix V1 rules (prefix only) with V2 rules (priority/filter/delete_marker_replication)")
    if versions == {False}:
        _check_prefixes_do_not_overlap(rules)
        return
    priorities = {}
    for index, rule in enumerate(rules):
        where = "rules[%d]" % index
        priority = rule.get("priority")
        if priority is None or not isinstance(priority, int) or priority < 0:
            raise ReplicationConfigError("%s.priority: V2 rules need a priority, an integer >= 0" % where)
        if priority in priorities:
            raise ReplicationConfigError(
                "%s.priority: %d is already the priority of rules[%d]; priorities must be unique"
                % (where, priority, priorities[priority]))
        priorities[priority] = index
        _validate_filter(where, rule)


def _validate_filter(where, rule):
    flt = rule.get("filter")
    if flt is None:
        return
    if not isinstance(flt, dict):
        raise ReplicationConfigError("%s.filter: must be a dict with prefix and/or tags" % where)
    extra = set(flt) - {"prefix", "tags"}
    if extra:
        raise ReplicationConfigError(
            "%s.filter: unknown key(s) %s; use prefix and tags" % (where, ", ".join(sorted(extra))))
    if rule.get("prefix") is not None and flt.get("prefix") is not None:
        raise ReplicationConfigError("%s: give the prefix either as prefix or as filter.prefix, not both" % where)
    tags = flt.get("tags") or {}
    if not isinstance(tags, dict):
        raise ReplicationConfigError("%s.filter.tags: must be a dict of tag key to value" % where)
    for key, value in tags.items():
        if not key or not isinstance(value, str):
            raise ReplicationConfigError(
                "%s.filter.tags: keys must be non-empty and values strings (%r)" % (where, key))
    if len(flt.get("prefix") or "") > MAX_PREFIX:
        raise ReplicationConfigError("%s.filter.prefix: at most %d characters" % (where, MAX_PREFIX))


# ------------------------------------------------------------------------------------------------- build


def build(role, rules):
    """The ReplicationConfiguration for put_bucket_replication from validated task options."""
    return {"Role": role_string(role), "Rules": [_build_rule(rule) for rule in rules]}


def _build_rule(rule):
    built = {}
    if rule.get("id"):
        built["ID"] = rule["id"]
    destination = {"Bucket": bucket_arn(rule["destination_bucket"])}
    if rule.get("storage_class"):
        destination["StorageClass"] = rule["storage_class"]
    if is_v2_rule(rule):
        flt = rule.get("filter") or {}
        built["Priority"] = rule["priority"]
        built["Filter"] = _build_filter(flt.get("prefix") if flt.get("prefix") is not None else rule.get("prefix"),
                                        flt.get("tags") or {})
        built["DeleteMarkerReplication"] = {"Status": rule.get("delete_marker_replication") or "Disabled"}
    else:
        built["Prefix"] = rule.get("prefix") or ""
    built["Status"] = rule.get("status") or "Enabled"
    built["Destination"] = destination
    return built


def _build_filter(prefix, tags):
    tag_list = [{"Key": key, "Value": tags[key]} for key in sorted(tags)]
    if not tag_list:
        return {"Prefix": prefix or ""}
    if len(tag_list) == 1 and not prefix:
        return {"Tag": tag_list[0]}
    conjunction = {"Tags": tag_list}
    if prefix:
        conjunction = {"Prefix": prefix, **conjunction}
    return {"And": conjunction}


# --------------------------------------------------------------------------------------------- normalise


def normalize(configuration):
    """A flat, comparable form of a ReplicationConfiguration (as sent or as returned by the API), or None.

    {"role": "<arn>[,<arn>]", "rules": [{id?, priority?, status, prefix, tags, delete_marker_replication,
    destination_bucket, storage_class, other?}]}
    """
    if not configuration:
        return None
    return {
        "role": role_string(configuration.get("Role") or ""),
        "rules": [_normalize_rule(rule) for rule in configuration.get("Rules") or []],
    }


def _normalize_rule(rule):
    prefix, tags = _filter_terms(rule)
    destination = rule.get("Destination") or {}
    normalized = {}
    if rule.get("ID"):
        normalized["id"] = rule["ID"]
    if rule.get("Priority") is not None:
        normalized["priority"] = int(rule["Priority"])
    normalized.update(
        status=rule.get("Status", "Enabled"),
        prefix=prefix,
        tags=tags,
        delete_marker_replication=(rule.get("DeleteMarkerReplication") or {}).get("Status", "Disabled"),
        destination_bucket=bucket_arn(destination.get("Bucket", "")),
        storage_class=destination.get("StorageClass"),
    )
    other = {key: value for key, value in rule.items() if key not in _KNOWN_RULE_KEYS}
    other.update({"Destination." + key: value for key, value in destination.items()
                  if key not in _KNOWN_DESTINATION_KEYS})
    if other:
        normalized["other"] = other
    return normalized


def _filter_terms(rule):
    """(prefix, tags dict) of a V1 rule (Prefix) or a V2 rule (Filter: Prefix | Tag | And)."""
    if "Filter" not in rule:
        return rule.get("Prefix") or "", {}
    flt = rule.get("Filter") or {}
    if "And" in flt:
        conjunction = flt["And"] or {}
        return conjunction.get("Prefix") or "", _tag_dict(conjunction.get("Tags") or [])
    if "Tag" in flt:
        return "", _tag_dict([flt["Tag"]])
    return flt.get("Prefix") or "", {}


def _tag_dict(tags):
    return {tag["Key"]: tag.get("Value", "") for tag in tags}


# ----------------------------------------------------------------------------------------------- compare


def rule_matches(wanted, current):
    """True when the server rule `current` satisfies the normalised task rule `wanted`.

    IDs and priorities the task does not give are the server's business (generated IDs, moto's and
    CloudServer's implicit priorities) and are not compared.
    """
    for key in set(wanted) | set(current):
        if key in ("id", "priority") and key not in wanted:
            continue
        if wanted.get(key) != current.get(key):
            return False
    return True


def configurations_match(wanted, current):
    """True when the normalised current configuration already is the wanted one (rule order ignored)."""
    if wanted is None or current is None:
        return wanted is current
    if wanted["role"] != current["role"] or len(wanted["rules"]) != len(current["rules"]):
        return False
    remaining = list(current["rules"])
    for rule in wanted["rules"]:
        match = next((candidate for candidate in remaining if rule_matches(rule, candidate)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True
