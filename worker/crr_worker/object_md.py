"""CloudServer object metadata (ObjectMD): its two version-id forms and its replication decision.

CloudServer keeps version ids in an internal form (`98204748556255999999RG001  0`: decreasing, with spaces)
and puts the hex encoding of that string on the wire (`x-amz-version-id`, `?versionId=`, listings). The worker
keeps one form for every identity it holds, the wire form: it is what `head-object` shows an operator and what
every route takes. The internal form stays inside the ObjectMD, untouched.
"""

from __future__ import annotations

import binascii
import hashlib
import json

METADATA_ONLY = "METADATA"
DATA = "DATA"
PUT_TAGGING, DELETE_TAGGING = "PUT_TAGGING", "DELETE_TAGGING"
# CloudServer's status words (the same as the ledger's, plus PROCESSING for a version some sites still wait for)
PENDING, PROCESSING, COMPLETED, FAILED = "PENDING", "PROCESSING", "COMPLETED", "FAILED"
REPLICA = "REPLICA"  # the status of a replica's own metadata


def wire_version_id(internal: str) -> str:
    """The hex form of an internal version id; "null" stays "null" (a version written before versioning)."""
    if not internal or internal == "null":
        return internal
    return binascii.hexlify(internal.encode("utf-8")).decode("ascii")


def internal_version_id(wire: str) -> str:
    """The internal form of a hex version id; an id that is not hex is returned as given."""
    try:
        return binascii.unhexlify(wire).decode("utf-8")
    except (binascii.Error, ValueError):
        return wire


def is_object_md(metadata: dict) -> bool:
    """Whether a replication entry's value is a source's whole ObjectMD (CloudServer stamps its model version)
    rather than the few fields an s3 source's entry carries."""
    return "md-model-version" in metadata


def parse_object_md(value: str | None) -> dict | None:
    """The ObjectMD in a record-log or metadata value; None for a placeholder (isPHD) or a value that is none."""
    if not value:
        return None
    try:
        metadata = json.loads(value)
    except ValueError:
        return None
    if not isinstance(metadata, dict) or metadata.get("isPHD"):
        return None
    return metadata


def md_digest(metadata: dict) -> str:
    """What identifies one user-visible state of a version: a digest of its ObjectMD without replicationInfo,
    the only part the worker's own status writes change. A user change (tags, ACL) gives another digest."""
    rest = {k: v for k, v in metadata.items() if k != "replicationInfo"}
    encoded = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


def object_tags(object_md: str) -> dict[str, str]:
    """The version's tags, as its ObjectMD (JSON) holds them."""
    tags = (parse_object_md(object_md) or {}).get("tags") or {}
    return {str(k): str(v) for k, v in tags.items()}


def pending_sites(metadata: dict) -> tuple[str, ...]:
    """The sites the version still has to reach: its backends whose status is PENDING."""
    info = metadata.get("replicationInfo") or {}
    return tuple(b["site"] for b in info.get("backends", []) if b.get("status") == PENDING and b.get("site"))


def overall_status(backends: list[dict]) -> str:
    """The version's status as Backbeat computes it: FAILED if any site failed, PROCESSING while any is not
    done, COMPLETED once every site is."""
    statuses = [b.get("status") for b in backends]
    if any(s == FAILED for s in statuses):
        return FAILED
    if statuses and all(s == COMPLETED for s in statuses):
        return COMPLETED
    return PROCESSING
