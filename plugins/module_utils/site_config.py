# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""One replication site written into CloudServer's config.json, locationConfig.json and the worker's config.

- config.json ``replicationEndpoints``: ``{"site", "servers": ["host:port"]}`` for a Scality site,
  ``{"site", "type": "aws_s3"}`` for a cloud site, ``"default": true`` on at most one.
- locationConfig.json: for an ``aws_s3`` site, a location named like the site (CloudServer takes a
  replication's storage type from there) ``{"type", "objectId", "legacyAwsBehavior", "details"}``.
- worker config ``extensions.replication.destination.bootstrapList``: Backbeat's entries, plus the
  details the worker needs to reach an aws_s3 target directly (same key names as locationConfig details).

Every editor returns a new document; keys and entries it does not manage are kept in place.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field

SITE_TYPES = ("scality", "aws_s3")
# Types CloudServer accepts in replicationEndpoints[].type (Arsenal's external backends).
CLOUDSERVER_ENDPOINT_TYPES = ("aws_s3", "azure", "gcp")
MASK = "********"
_SECRET_KEYS = ("secretKey", "accessKey", "secret_key", "access_key")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")
_OBJECT_ID_NAMESPACE = uuid.UUID("6f0c3b8e-5d0e-4c8e-9d4f-0b6f3a0c2e11")

_ENDPOINT_KEYS = ("site", "servers", "type", "default")
_LOCATION_DETAIL_KEYS = ("awsEndpoint", "bucketName", "bucketMatch", "credentialsProfile", "credentials",
                         "serverSideEncryption", "https", "pathStyle", "supportsVersioning")
_BOOTSTRAP_KEYS = ("site", "servers", "type", "awsEndpoint", "bucketName", "region", "bucketMatch",
                   "credentialsProfile", "credentials", "https", "pathStyle", "canonicalId", "displayName",
                   "replicateVersionDeletes")


class SiteConfigError(ValueError):
    """Invalid site options or configuration content; the message names the option or file and the fix."""


@dataclass
class Site:
    """A replication site as the crr_endpoint task describes it."""

    name: str
    type: str | None = None
    servers: list = field(default_factory=list)
    default: bool = False
    aws_endpoint: str | None = None
    bucket: str | None = None
    region: str | None = None
    bucket_match: bool = False
    credentials_profile: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    server_side_encryption: bool = False
    https: bool | None = None  # None: HTTPS for an aws_s3 endpoint, HTTP for a scality site's servers
    path_style: bool = False
    supports_versioning: bool = True
    legacy_aws_behavior: bool = False
    canonical_id: str | None = None
    display_name: str | None = None
    replicate_version_deletes: bool = False

    @property
    def uses_https(self):
        return self.https if self.https is not None else self.type != "scality"


# ---------------------------------------------------------------------------------------------- validate


def validate_site(site, state, needs_aws_details):
    """Raise SiteConfigError for options CloudServer or the worker would reject."""
    if not site.name or not isinstance(site.name, str):
        raise SiteConfigError("name: a non-empty site name is required")
    if state == "absent":
        return
    if site.type not in SITE_TYPES:
        raise SiteConfigError("type: must be one of %s with state=present" % ", ".join(SITE_TYPES))
    if site.type == "scality":
        _validate_scality(site)
    else:
        _validate_aws(site, needs_aws_details)


def _validate_scality(site):
    if not site.servers:
        raise SiteConfigError("servers: a scality site needs at least one host:port")
    for server in site.servers:
        check_server(server)
    for option in ("aws_endpoint", "bucket", "region", "access_key", "secret_key"):
        if getattr(site, option):
            raise SiteConfigError("%s: applies to type aws_s3 only; remove it for a scality site" % option)


def _validate_aws(site, needs_aws_details):
    for option in ("canonical_id", "display_name"):
        if getattr(site, option):
            raise SiteConfigError("%s: applies to type scality only; remove it for an aws_s3 site" % option)
    if site.servers:
        raise SiteConfigError("servers: applies to type scality only; an aws_s3 site uses aws_endpoint and bucket")
    if site.credentials_profile and (site.access_key or site.secret_key):
        raise SiteConfigError("credentials_profile: give either credentials_profile or access_key/secret_key")
    if bool(site.access_key) != bool(site.secret_key):
        raise SiteConfigError("access_key/secret_key: give both or neither")
    if not needs_aws_details:
        return
    for option in ("aws_endpoint", "bucket"):
        if not getattr(site, option):
            raise SiteConfigError(
                "%s: required for an aws_s3 site written to location_config or worker_config" % option)
    if not (site.credentials_profile or site.access_key):
        raise SiteConfigError("credentials_profile: an aws_s3 site needs credentials_profile or access_key/secret_key")


def check_server(server):
    """Raise SiteConfigError unless server is 'host:port' with a port in 1..65535."""
    match = _HOST_PORT.match(server or "")
    if not match or not 0 < int(match.group("port")) < 65536:
        raise SiteConfigError("servers: %r is not host:port with a port in 1-65535 (e.g. 10.0.0.5:8000)" % server)


# ------------------------------------------------------------------------------------------ config.json


def replication_endpoints(config, label):
    """The replicationEndpoints list of a CloudServer config (empty when absent)."""
    endpoints = config.get("replicationEndpoints", []) if isinstance(config, dict) else None
    if not isinstance(endpoints, list):
        raise SiteConfigError("%s: replicationEndpoints must be a list" % label)
    return endpoints


def apply_replication_endpoint(config, site, state, label="cloudserver_config"):
    """config.json with the site's replicationEndpoints entry added, updated or removed."""
    if not isinstance(config, dict):
        raise SiteConfigError("%s: the top level must be a JSON object" % label)
    updated = copy.deepcopy(config)
    endpoints = replication_endpoints(updated, label)
    wanted = None
    if state == "present":
        wanted = {"site": site.name}
        if site.type == "scality":
            wanted["servers"] = list(site.servers)
        else:
            wanted["type"] = site.type
        if site.default:
            wanted["default"] = True
    updated["replicationEndpoints"] = _replace_entry(endpoints, "site", site.name, wanted, _ENDPOINT_KEYS)
    check_replication_endpoints(updated["replicationEndpoints"], label)
    return updated


def check_replication_endpoints(endpoints, label):
    """Raise SiteConfigError for a replicationEndpoints list CloudServer would refuse to start with."""
    seen = set()
    defaults = []
    for index, entry in enumerate(endpoints):
        where = "%s: replicationEndpoints[%d]" % (label, index)
        if not isinstance(entry, dict) or not isinstance(entry.get("site"), str) or not entry["site"]:
            raise SiteConfigError("%s needs a non-empty string 'site'" % where)
        if entry["site"] in seen:
            raise SiteConfigError("%s: site %r is declared twice; site names must be unique" % (where, entry["site"]))
        seen.add(entry["site"])
        if "type" in entry:
            if entry["type"] not in CLOUDSERVER_ENDPOINT_TYPES:
                raise SiteConfigError("%s: type %r is not one CloudServer accepts (%s)"
                                      % (where, entry["type"], ", ".join(CLOUDSERVER_ENDPOINT_TYPES)))
        elif not isinstance(entry.get("servers"), list) or not entry["servers"]:
            raise SiteConfigError("%s (site %r) needs 'servers' or 'type'" % (where, entry["site"]))
        if entry.get("default"):
            defaults.append(entry["site"])
    if len(defaults) > 1:
        raise SiteConfigError("%s: sites %s are all default; at most one site may have default: true "
                              "(set default: false on the others)" % (label, ", ".join(defaults)))


def site_types(config, label="cloudserver_config"):
    """{site: 'scality' | '<type>'} of a CloudServer config, with '' for the default (or first) site."""
    endpoints = [e for e in replication_endpoints(config, label) if isinstance(e, dict) and e.get("site")]
    types = {entry["site"]: entry.get("type") or "scality" for entry in endpoints}
    default = next((e for e in endpoints if e.get("default")), endpoints[0] if endpoints else None)
    if default is not None:
        types[""] = types[default["site"]]
    return types


# ------------------------------------------------------------------------------------ locationConfig.json


def apply_location(config, site, state, label="location_config"):
    """locationConfig.json with the aws_s3 location named like the site added, updated or removed.

    A Scality site has no location of its own: the file is returned unchanged. state=absent removes the
    location only when it is an aws_s3 location, so a stock 'file' location of the same name survives.
    """
    if not isinstance(config, dict):
        raise SiteConfigError("%s: the top level must be a JSON object of locations" % label)
    updated = copy.deepcopy(config)
    current = updated.get(site.name)
    if state == "absent":
        if isinstance(current, dict) and current.get("type") == "aws_s3":
            del updated[site.name]
        return updated
    if site.type != "aws_s3":
        return updated
    current = current if isinstance(current, dict) else {}
    location = dict(current)
    location["type"] = "aws_s3"
    location["objectId"] = current.get("objectId") or _free_object_id(updated, site.name)
    location["legacyAwsBehavior"] = site.legacy_aws_behavior
    details = current.get("details") if isinstance(current.get("details"), dict) else {}
    location["details"] = _merge(details, _location_details(site), _LOCATION_DETAIL_KEYS)
    updated[site.name] = location
    _check_object_ids(updated, label)
    return updated


def _location_details(site):
    details = {"awsEndpoint": site.aws_endpoint, "bucketName": site.bucket, "bucketMatch": site.bucket_match}
    if site.credentials_profile:
        details["credentialsProfile"] = site.credentials_profile
    else:
        details["credentials"] = {"accessKey": site.access_key, "secretKey": site.secret_key}
    details.update(serverSideEncryption=site.server_side_encryption, https=site.uses_https, pathStyle=site.path_style,
                   supportsVersioning=site.supports_versioning)
    return details


def _free_object_id(locations, name):
    """The site name when no location uses it as objectId yet, else a UUID derived from the name (stable)."""
    used = {loc.get("objectId") for loc in locations.values() if isinstance(loc, dict)}
    return name if name not in used else str(uuid.uuid5(_OBJECT_ID_NAMESPACE, name))


def _check_object_ids(locations, label):
    owners = {}
    for name, location in locations.items():
        object_id = location.get("objectId") if isinstance(location, dict) else None
        if object_id is None:
            continue
        if object_id in owners:
            raise SiteConfigError("%s: locations %r and %r share objectId %r; objectIds must be unique"
                                  % (label, owners[object_id], name, object_id))
        owners[object_id] = name


# ------------------------------------------------------------------------------------------ worker config


def apply_bootstrap_entry(config, site, state, label="worker_config"):
    """Worker config with the site's extensions.replication.destination.bootstrapList entry set or removed."""
    if not isinstance(config, dict):
        raise SiteConfigError("%s: the top level must be a JSON object" % label)
    updated = copy.deepcopy(config)
    destination = updated
    for key in ("extensions", "replication", "destination"):
        nested = destination.setdefault(key, {})
        if not isinstance(nested, dict):
            raise SiteConfigError("%s: %s must be a JSON object" % (label, key))
        destination = nested
    entries = destination.get("bootstrapList", [])
    if not isinstance(entries, list):
        raise SiteConfigError("%s: extensions.replication.destination.bootstrapList must be a list" % label)
    wanted = _bootstrap_entry(site) if state == "present" else None
    destination["bootstrapList"] = _replace_entry(entries, "site", site.name, wanted, _BOOTSTRAP_KEYS)
    names = [entry.get("site") for entry in destination["bootstrapList"] if isinstance(entry, dict)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SiteConfigError("%s: bootstrapList declares site(s) %s more than once; site names must be unique"
                              % (label, ", ".join(duplicates)))
    return updated


def _bootstrap_entry(site):
    entry = _site_entry(site)
    if site.replicate_version_deletes:
        entry["replicateVersionDeletes"] = True  # absent: false, the worker's default
    return entry


def _site_entry(site):
    if site.type == "scality":  # the worker writes replicas as the target account, with its keys
        optional = {"canonicalId": site.canonical_id, "displayName": site.display_name,
                    "credentialsProfile": site.credentials_profile}
        if site.uses_https:
            optional["https"] = True  # absent: HTTP, the worker's default for a scality site
        return dict({"site": site.name, "servers": list(site.servers)},
                    **{key: value for key, value in optional.items() if value})
    entry = {"site": site.name, "type": site.type}
    optional = {"awsEndpoint": site.aws_endpoint, "bucketName": site.bucket, "region": site.region}
    entry.update({key: value for key, value in optional.items() if value})
    entry["bucketMatch"] = site.bucket_match
    if site.credentials_profile:
        entry["credentialsProfile"] = site.credentials_profile
    elif site.access_key:
        entry["credentials"] = {"accessKey": site.access_key, "secretKey": site.secret_key}
    entry.update(https=site.uses_https, pathStyle=site.path_style)
    return entry


# ---------------------------------------------------------------------------------------------- helpers


def _replace_entry(entries, key, name, wanted, managed):
    """entries with the one whose `key` is `name` merged with wanted (appended if new, removed if None)."""
    matches = [i for i, entry in enumerate(entries) if isinstance(entry, dict) and entry.get(key) == name]
    if len(matches) > 1:
        raise SiteConfigError("site %r is declared %d times; remove the duplicates first" % (name, len(matches)))
    result = list(entries)
    if wanted is None:
        return [entry for i, entry in enumerate(result) if i not in matches]
    if matches:
        result[matches[0]] = _merge(result[matches[0]], wanted, managed)
    else:
        result.append(wanted)
    return result


def _merge(current, wanted, managed):
    """current with managed keys replaced by wanted's (order kept, stale managed keys dropped, others kept)."""
    merged = {}
    for key, value in current.items():
        if key not in managed:
            merged[key] = value
        elif key in wanted:
            merged[key] = wanted[key]
    for key, value in wanted.items():
        merged.setdefault(key, value)
    return merged


def mask_secrets(data):
    """A copy of data with access and secret keys replaced by a mask (for diffs and results)."""
    if isinstance(data, dict):
        return {key: (MASK if key in _SECRET_KEYS and value else mask_secrets(value)) for key, value in data.items()}
    if isinstance(data, list):
        return [mask_secrets(item) for item in data]
    return data
