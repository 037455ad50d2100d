#!/usr/bin/python
# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: crr_endpoint
short_description: Declare one replication site in CloudServer's and the replication worker's configuration
version_added: 0.1.0
description:
  - Writes one replication site consistently into any of CloudServer's C(config.json) (C(replicationEndpoints)),
    CloudServer's C(locationConfig.json) (an C(aws_s3) location named like the site) and the replication worker's
    Backbeat-shaped configuration (C(extensions.replication.destination.bootstrapList)).
  - Declaring the site in all files from one task keeps them from drifting apart (a site missing from one
    of them leaves objects PENDING forever).
  - All other keys and entries of the files are kept. A file is rewritten only when its content changes,
    atomically (temporary file in the same directory, then rename) with its owner and mode kept.
  - Every file is read and checked before any is written; a file that is not valid JSON is an error and
    no file is touched.
options:
  name:
    description:
      - Site name, used as C(site) in C(replicationEndpoints) and C(bootstrapList), as the location name in
        C(locationConfig.json), and as the destination C(StorageClass) of replication rules.
    type: str
    required: true
  type:
    description:
      - V(scality) for another CloudServer / S3 Connector reached through O(servers).
      - V(aws_s3) for any S3 API (AWS S3, or another S3 endpoint) described by O(aws_endpoint) and O(bucket).
      - Required with O(state=present).
    type: str
    choices: [scality, aws_s3]
  servers:
    description:
      - C(host:port) of the target CloudServer(s) of a V(scality) site.
    type: list
    elements: str
    default: []
  default:
    description:
      - Whether this site is the default replication endpoint (used by rules without a storage class).
      - At most one site of C(config.json) may be the default.
    type: bool
    default: false
  aws_endpoint:
    description:
      - Host (and port) of the S3 endpoint of an V(aws_s3) site, for example C(s3.amazonaws.com).
      - Required for V(aws_s3) when O(location_config) or O(worker_config) is given.
    type: str
  bucket:
    description:
      - Target bucket of an V(aws_s3) site (C(bucketName)).
      - Required for V(aws_s3) when O(location_config) or O(worker_config) is given.
    type: str
  region:
    description:
      - Region of the V(aws_s3) target, written for the worker.
    type: str
  bucket_match:
    description:
      - V(true) keeps object keys as they are in the target bucket; V(false) prefixes them with the source
        bucket name (C(bucketMatch)).
    type: bool
    default: false
  credentials_profile:
    description:
      - Profile of the credentials file used to reach the V(aws_s3) target, or, in O(worker_config), the
        V(scality) target account's keys.
      - Mutually exclusive with O(access_key) and O(secret_key).
    type: str
  canonical_id:
    description:
      - Canonical id of the V(scality) site's target account, written into O(worker_config) only
        (C(canonicalId)); the worker writes replicas as that account.
    type: str
  display_name:
    description:
      - Display name of that account (C(displayName)), written into O(worker_config) only.
    type: str
  replicate_version_deletes:
    description:
      - Whether a version deleted from the source by its version id is deleted from this site too
        (C(replicateVersionDeletes) in O(worker_config) only). AWS S3 replication never does this; MinIO does.
      - Off, a version deleted on the source stays on the site, whose copy then keeps the data the source lost.
      - On, the worker deletes the site's replica of that version once the source confirms it gone; a delete
        marker removed from the source goes from the site too. A DELETE without a version id is not a version
        delete, it makes a delete marker, replicated as any version.
    type: bool
    default: false
  access_key:
    description:
      - Access key of the V(aws_s3) target, written as C(credentials) when no O(credentials_profile) is given.
      - Never logged, masked in diffs.
    type: str
  secret_key:
    description:
      - Secret key paired with O(access_key). Never logged, masked in diffs.
    type: str
  server_side_encryption:
    description:
      - C(serverSideEncryption) of the V(aws_s3) location.
    type: bool
    default: false
  https:
    description:
      - Whether the site is reached over HTTPS.
      - For an V(aws_s3) site, its endpoint (C(https) of the location); default V(true).
      - For a V(scality) site, its O(servers), by the worker only (C(https) in its C(bootstrapList) entry);
        default V(false), as CloudServer listens for HTTP unless configured otherwise.
    type: bool
  path_style:
    description:
      - Whether path-style addressing is used for the V(aws_s3) endpoint.
    type: bool
    default: false
  supports_versioning:
    description:
      - C(supportsVersioning) of the V(aws_s3) location.
    type: bool
    default: true
  legacy_aws_behavior:
    description:
      - C(legacyAwsBehavior) of the V(aws_s3) location.
    type: bool
    default: false
  cloudserver_config:
    description:
      - Path of CloudServer's C(config.json); the site is written to C(replicationEndpoints).
    type: path
  location_config:
    description:
      - Path of CloudServer's C(locationConfig.json); an V(aws_s3) site is written as a location of the same name.
      - A V(scality) site has no location; with O(state=absent) only an C(aws_s3) location of that name is removed.
    type: path
  worker_config:
    description:
      - Path of the replication worker's configuration; the site is written to
        C(extensions.replication.destination.bootstrapList).
    type: path
  backup:
    description:
      - Keep a timestamped copy of every file before it is changed.
    type: bool
    default: false
  state:
    description:
      - V(present) adds or updates the site, V(absent) removes it from the given files.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode (the JSON of every changed file, secrets masked).
  - CloudServer reads its configuration at start; restart it after a change.
author:
  - backbeat.crr contributors (@backbeat-crr)
"""

EXAMPLES = r"""
- name: Declare a Scality site (CloudServer config and worker)
  backbeat.crr.crr_endpoint:
    name: zenko
    type: scality
    servers: ["10.0.0.5:8000", "10.0.0.6:8000"]
    default: true
    cloudserver_config: /etc/scality/cloudserver/config.json
    worker_config: /etc/crr-worker/config.json

- name: Declare an AWS S3 site, its location and the worker's target
  backbeat.crr.crr_endpoint:
    name: awsbackend
    type: aws_s3
    aws_endpoint: s3.amazonaws.com
    bucket: my-replica-bucket
    region: us-east-1
    bucket_match: true
    credentials_profile: aws_backend
    cloudserver_config: /etc/scality/cloudserver/config.json
    location_config: /etc/scality/cloudserver/locationConfig.json
    worker_config: /etc/crr-worker/config.json
    backup: true

- name: Remove a site everywhere
  backbeat.crr.crr_endpoint:
    name: awsbackend
    state: absent
    cloudserver_config: /etc/scality/cloudserver/config.json
    location_config: /etc/scality/cloudserver/locationConfig.json
    worker_config: /etc/crr-worker/config.json
"""

RETURN = r"""
name:
  description: Site name.
  returned: always
  type: str
  sample: awsbackend
files:
  description: Paths of the files that were (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
  sample: [/etc/scality/cloudserver/config.json]
backup_files:
  description: Backup copy of each changed file, by file path.
  returned: when O(backup=true) and a file changed
  type: dict
  sample: {"/etc/scality/cloudserver/config.json": "/etc/scality/cloudserver/config.json.1234.2026-11-21@09:15:00~"}
"""

from ansible_collections.backbeat.crr.plugins.module_utils import json_file  # noqa: E402
from ansible_collections.backbeat.crr.plugins.module_utils.modules import CrrModule, ModuleFailure  # noqa: E402
from ansible_collections.backbeat.crr.plugins.module_utils.site_config import (  # noqa: E402
    Site,
    SiteConfigError,
    apply_bootstrap_entry,
    apply_location,
    apply_replication_endpoint,
    mask_secrets,
    validate_site,
)

# File option -> editor of that file's document.
EDITORS = {
    "cloudserver_config": apply_replication_endpoint,
    "location_config": apply_location,
    "worker_config": apply_bootstrap_entry,
}


ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    type=dict(type="str", choices=["scality", "aws_s3"]),
    servers=dict(type="list", elements="str", default=[]),
    default=dict(type="bool", default=False),
    aws_endpoint=dict(type="str"),
    bucket=dict(type="str"),
    region=dict(type="str"),
    bucket_match=dict(type="bool", default=False),
    credentials_profile=dict(type="str"),
    access_key=dict(type="str", no_log=True),
    secret_key=dict(type="str", no_log=True),
    server_side_encryption=dict(type="bool", default=False),
    https=dict(type="bool"),
    path_style=dict(type="bool", default=False),
    supports_versioning=dict(type="bool", default=True),
    legacy_aws_behavior=dict(type="bool", default=False),
    canonical_id=dict(type="str"),
    display_name=dict(type="str"),
    replicate_version_deletes=dict(type="bool", default=False),
    cloudserver_config=dict(type="path"),
    location_config=dict(type="path"),
    worker_config=dict(type="path"),
    backup=dict(type="bool", default=False),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def site_from_params(params):
    return Site(**{key: params[key] for key in Site.__dataclass_fields__})


def plan_file(option, path, site, state):
    """(path, current text, new text or None when unchanged, before data, after data) for one file."""
    data, text = json_file.load(path)
    updated = EDITORS[option](data, site, state, label="%s (%s)" % (option, path))
    if updated == data:
        return path, text, None, data, data
    return path, text, json_file.render(updated, json_file.detect_indent(text)), data, updated


def write_file(module, plan, backup):
    """Write one planned file (unless check mode); the backup path, if one was made."""
    path, _text, new_text, _before, _after = plan
    if module.check_mode or new_text is None:
        return None
    backup_path = json_file.backup(path) if backup else None
    json_file.write_atomic(path, new_text)
    return backup_path


def file_diff(plan):
    path, _text, _new_text, before, after = plan
    return {
        "before_header": path,
        "after_header": path,
        "before": json_file.render(mask_secrets(before)),
        "after": json_file.render(mask_secrets(after)),
    }


def write_files(module, plans, result):
    """Write the changed files (unless check mode); {path: backup path} of the backups made."""
    backups = {}
    for plan in plans:
        try:
            backup_path = write_file(module, plan, module.params["backup"])
        except OSError as exc:
            raise ModuleFailure("cannot write %s: %s" % (plan[0], exc), **result) from None
        if backup_path:
            backups[plan[0]] = backup_path
    return backups


def apply(module):
    """The site in every file given, as the options say; returns the module's result."""
    params = module.params
    site = site_from_params(params)
    state = params["state"]
    options = [option for option in EDITORS if params[option]]

    # Validate the options and every file before writing anything.
    try:
        validate_site(site, state, needs_aws_details=bool(params["location_config"] or params["worker_config"]))
        plans = [plan_file(option, params[option], site, state) for option in options]
    except (SiteConfigError, json_file.JsonFileError) as exc:
        raise ModuleFailure(str(exc)) from None

    changed_plans = [plan for plan in plans if plan[2] is not None]
    result = dict(changed=bool(changed_plans), name=site.name, files=[plan[0] for plan in changed_plans])
    backups = write_files(module, changed_plans, result)
    if backups:
        result["backup_files"] = backups
    if module.diff:
        result["diff"] = [file_diff(plan) for plan in changed_plans]
    return result


def main():
    CrrModule(
        ARGUMENT_SPEC,
        connects=False,
        required_if=[("state", "present", ["type"])],
        required_one_of=[["cloudserver_config", "location_config", "worker_config"]],
        mutually_exclusive=[["credentials_profile", "access_key"], ["credentials_profile", "secret_key"]],
        required_together=[["access_key", "secret_key"]],
    ).run(apply)


if __name__ == "__main__":
    main()
