"""Kafka entries in Backbeat's shape: replication entries (work to do) and status entries (outcomes).

Message key `<bucket>/<key>` keeps every version of one key on one partition, hence in order. The value is
`{"type", "bucket", "key": "<key>\\u0000<versionId>", "value": "<object metadata JSON>"}` with Backbeat's
`replicationInfo`; status entries add `site` and `replayCount`. Fields Backbeat does not know (`enqueuedAt`,
`reason`) are extra keys a Backbeat reader ignores.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from crr_worker.object_md import is_object_md, md_digest, pending_sites, wire_version_id

VERSION_SEPARATOR = "\u0000"
PENDING, COMPLETED, FAILED = "PENDING", "COMPLETED", "FAILED"
STATUSES = (PENDING, COMPLETED, FAILED)
_RANK = {PENDING: 0, FAILED: 1, COMPLETED: 2}  # within one generation, which status wins (Standing.outranks)


def now_ms() -> int:
    return int(time.time() * 1000)


def ledger_key(site: str, bucket: str, key: str, version_id: str) -> bytes:
    """Key in the compacted ledger: one record per (site, bucket, key, version)."""
    return json.dumps([site, bucket, key, version_id]).encode("utf-8")


def key_digest(key: bytes) -> bytes:
    """16 bytes standing for a ledger key in memory, where the populator and the status processor keep one for
    each version of every replicated bucket (two colliding among 4 billion versions: about 1 in 10**19)."""
    return hashlib.blake2b(key, digest_size=16).digest()


class Standing(NamedTuple):
    """What decides whether a status replaces another: its generation, its status's rank, its time."""

    enqueued_at: int
    rank: int
    updated_at: int

    def outranks(self, current: Standing | None) -> bool:
        """A later generation (retry, re-enqueue) wins. Within one generation an outcome beats PENDING, since the
        populator's PENDING may arrive after the processor's outcome, and COMPLETED beats FAILED: two processors
        may have worked on the same record (a partition moved mid-copy), and once one wrote the replica the
        version is replicated whatever the other met; otherwise the later status wins."""
        if current is None:
            return True
        if self.enqueued_at != current.enqueued_at:
            return self.enqueued_at > current.enqueued_at
        if self.rank != current.rank:
            return self.rank > current.rank
        return self.rank != _RANK[PENDING] and self.updated_at >= current.updated_at


_SITE_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(sites: Iterable[str]) -> tuple[str, ...]:
    """One object for each tuple of site names, like sys.intern for the strings that every status of a bucket
    repeats (bucket, sites, destination, role): the API keeps a status per version."""
    sites = tuple(sys.intern(s) for s in sites)
    return _SITE_TUPLES.setdefault(sites, sites)


class EntryError(ValueError):
    """A Kafka message that is not a replication or status entry."""


@dataclass(frozen=True)
class ReplicationEntry:
    """One source version (object or delete marker) to replicate to `sites`."""

    bucket: str
    key: str
    version_id: str
    is_delete_marker: bool = False
    size: int = 0
    etag: str = ""
    last_modified: str = ""
    sites: tuple[str, ...] = ()
    destination: str = ""
    role: str = ""
    storage_class: str = ""
    storage_type: str = "aws_s3"
    enqueued_at: int = field(default_factory=now_ms)
    replay_count: int = 0
    # What to replicate (Backbeat's replicationInfo.content): DATA and METADATA for a new object version (the
    # default), METADATA alone for a delete marker or a metadata change (+ PUT_TAGGING / DELETE_TAGGING).
    content: tuple[str, ...] = ()
    object_md: str = ""  # the source's whole ObjectMD (JSON), for a CloudServer source; carried as is
    md_digest: str = ""  # object_md.md_digest of it, kept by statuses (which do not carry the ObjectMD)
    # A version delete (a "del" entry): the version was deleted from the source by its id, and its replica is to be
    # deleted from the sites (replicateVersionDeletes); its COMPLETED status says the site holds it no more.
    deleted: bool = False
    # A first copy (crr_worker.first_copies): the source's newest version of its key, published for the first time,
    # so no replica of it or of a newer version can be on a site and the target writes it without looking first.
    first_copy: bool = False

    def __post_init__(self):
        if not self.content:
            usual = ("METADATA",) if self.is_delete_marker else ("DATA", "METADATA")
            object.__setattr__(self, "content", _shared(usual))

    @property
    def metadata_only(self) -> bool:
        return not self.is_delete_marker and "DATA" not in self.content

    @property
    def message_key(self) -> bytes:
        """Kafka key: all versions of one object share it, so they land on one partition, in order."""
        return ("%s/%s" % (self.bucket, self.key)).encode("utf-8")

    @property
    def destination_bucket(self) -> str:
        """The bucket named by the rule's destination ARN (`arn:aws:s3:::name`)."""
        return self.destination.rsplit(":", 1)[-1] if self.destination else ""

    def for_sites(self, sites: tuple[str, ...]) -> ReplicationEntry:
        """The same version re-queued for `sites` only: a new generation, stamped now, one more replay."""
        return replace(self, sites=tuple(sites), enqueued_at=now_ms(), replay_count=self.replay_count + 1,
                       first_copy=False)

    def checked(self) -> ReplicationEntry:
        """The same entry, not a first copy: for a try after the first and a record that may have been handled before,
        whose replica may already be on the site."""
        return replace(self, first_copy=False) if self.first_copy else self

    def object_metadata(self, statuses: dict[str, tuple[str, str]] | None = None) -> dict:
        """Backbeat's object metadata with `replicationInfo`; `statuses` maps site -> (status, target version)."""
        statuses = statuses or {}
        backends = [
            {"site": s, "status": statuses.get(s, (PENDING, ""))[0], "dataStoreVersionId": statuses.get(s, ("", ""))[1]}
            for s in self.sites
        ]
        overall = _overall_status([b["status"] for b in backends])
        digest = {"mdDigest": self.md_digest} if self.md_digest else {}
        return dict(digest, **{
            "content-length": self.size,
            "content-md5": self.etag.strip('"'),
            "last-modified": self.last_modified,
            "versionId": self.version_id,
            "isDeleteMarker": self.is_delete_marker,
            "replicationInfo": {
                "status": overall,
                "backends": backends,
                "content": list(self.content),
                "destination": self.destination,
                "storageClass": self.storage_class or ",".join(self.sites),
                "role": self.role,
                "storageType": self.storage_type,
            },
        })

    def to_kafka(self) -> tuple[bytes, bytes]:
        """(key, value) bytes of this entry on the replication topic; the source's ObjectMD as it came, if any."""
        envelope = self._envelope(self.object_md or self.object_metadata())
        if self.object_md:
            envelope["sites"] = list(self.sites)  # the ObjectMD's backends may name sites this worker does not serve
        if self.first_copy:
            envelope["firstCopy"] = True  # on the replication topic only: a status's entry is never one
        return self.message_key, json.dumps(envelope).encode("utf-8")

    def _envelope(self, metadata: dict | str) -> dict:
        return {
            "type": "del" if self.deleted else "put",
            "bucket": self.bucket,
            "key": "%s%s%s" % (self.key, VERSION_SEPARATOR, self.version_id),
            "value": metadata if isinstance(metadata, str) else json.dumps(metadata),
            "enqueuedAt": self.enqueued_at,
            "replayCount": self.replay_count,
        }

    @classmethod
    def from_object_md(cls, bucket: str, key: str, object_md: str, sites: tuple[str, ...]) -> ReplicationEntry:
        """The entry of a source version whose ObjectMD (JSON) carries the decision, for `sites`; EntryError
        when it is not one."""
        envelope = {"bucket": bucket, "key": key + VERSION_SEPARATOR, "value": object_md, "sites": list(sites),
                    "enqueuedAt": now_ms()}
        return cls._from_envelope(envelope)[0]

    @classmethod
    def from_kafka(cls, value: bytes) -> ReplicationEntry:
        """The entry in a replication topic message value; EntryError when it is not one."""
        envelope = _decode(value)
        return cls._from_envelope(envelope)[0]

    @classmethod
    def _from_envelope(cls, envelope: dict) -> tuple[ReplicationEntry, dict]:
        try:
            key, _, version_id = envelope["key"].partition(VERSION_SEPARATOR)
            metadata = json.loads(envelope["value"])
            info = metadata.get("replicationInfo") or {}
            full = is_object_md(metadata)
            if full:  # CloudServer's: its internal version id, in the wire form the worker keeps
                version_id = wire_version_id(metadata.get("versionId", ""))
                sites = envelope.get("sites") or pending_sites(metadata)
            else:
                sites = [b["site"] for b in info.get("backends", [])]
            entry = cls(
                bucket=sys.intern(envelope["bucket"]),
                key=key,
                version_id=version_id or metadata.get("versionId", ""),
                is_delete_marker=bool(metadata.get("isDeleteMarker", False)),
                size=int(metadata.get("content-length") or 0),
                etag=metadata.get("content-md5", ""),
                last_modified=metadata.get("last-modified", ""),
                sites=_shared(sites),
                destination=sys.intern(info.get("destination", "")),
                role=sys.intern(info.get("role", "")),
                storage_class=sys.intern(info.get("storageClass", "")),
                storage_type=sys.intern(info.get("storageType", "aws_s3")),
                enqueued_at=int(envelope.get("enqueuedAt") or 0),
                replay_count=int(envelope.get("replayCount") or 0),
                content=_shared(info.get("content") or ()),
                object_md=envelope["value"] if full else "",
                md_digest=md_digest(metadata) if full else metadata.get("mdDigest", ""),
                deleted=envelope.get("type") == "del",
                first_copy=envelope.get("firstCopy") is True,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EntryError("not a replication entry: %s" % exc) from exc
        if not entry.version_id:
            raise EntryError("replication entry of %s/%s has no version id" % (entry.bucket, entry.key))
        return entry, metadata


@dataclass(frozen=True)
class StatusEntry:
    """The state of one version on one site: PENDING, COMPLETED (with the target version id) or FAILED (reason)."""

    entry: ReplicationEntry
    site: str
    status: str
    reason: str = ""
    target_version_id: str = ""
    updated_at: int = field(default_factory=now_ms)
    replay_at: int = 0  # FAILED for a reason that may pass: when it is re-queued automatically (epoch ms); 0: final

    @property
    def ledger_key(self) -> bytes:
        return ledger_key(self.site, self.entry.bucket, self.entry.key, self.entry.version_id)

    @property
    def standing(self) -> Standing:
        return Standing(self.entry.enqueued_at, _RANK[self.status], self.updated_at)

    def supersedes(self, current: StatusEntry | None) -> bool:
        """Whether this status replaces `current` in the ledger (Standing.outranks)."""
        return self.standing.outranks(current.standing if current is not None else None)

    def to_kafka(self) -> tuple[bytes, bytes]:
        """(key, value) of this status on the status topic (key `<bucket>/<key>`, like the entry)."""
        metadata = self.entry.object_metadata({self.site: (self.status, self.target_version_id)})
        envelope = self.entry._envelope(metadata)
        envelope.update(
            site=self.site,
            status=self.status,
            reason=self.reason,
            updatedAt=self.updated_at,
        )
        if self.replay_at:
            envelope["replayAt"] = self.replay_at
        return self.entry.message_key, json.dumps(envelope).encode("utf-8")

    @classmethod
    def from_kafka(cls, value: bytes) -> StatusEntry:
        """The status in a status/ledger message value; EntryError when it is not one."""
        envelope = _decode(value)
        entry, metadata = ReplicationEntry._from_envelope(envelope)
        try:
            site = envelope["site"]
            backend = next((b for b in metadata["replicationInfo"]["backends"] if b["site"] == site), {})
            status = envelope.get("status") or backend.get("status", "")
            if status not in STATUSES:
                raise ValueError("unknown status %r" % status)
            return cls(
                entry=entry,
                site=sys.intern(site),
                status=sys.intern(status),
                reason=envelope.get("reason", ""),
                target_version_id=backend.get("dataStoreVersionId", ""),
                updated_at=int(envelope.get("updatedAt") or 0),
                replay_at=int(envelope.get("replayAt") or 0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EntryError("not a status entry: %s" % exc) from exc

    def to_dict(self) -> dict:
        """A flat, printable view for the CLI and API."""
        return {
            "bucket": self.entry.bucket,
            "key": self.entry.key,
            "versionId": self.entry.version_id,
            "isDeleteMarker": self.entry.is_delete_marker,
            "site": self.site,
            "status": self.status,
            "reason": self.reason,
            "dataStoreVersionId": self.target_version_id,
            "replayCount": self.entry.replay_count,
            "versionDeleted": self.entry.deleted,
            "updatedAt": self.updated_at,
            "replayAt": self.replay_at,
        }


def _overall_status(statuses: list[str]) -> str:
    if statuses and all(s == COMPLETED for s in statuses):
        return COMPLETED
    if any(s == FAILED for s in statuses):
        return FAILED
    return PENDING


def _decode(value: bytes) -> dict:
    try:
        envelope = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise EntryError("not JSON: %s" % exc) from exc
    if not isinstance(envelope, dict):
        raise EntryError("not a JSON object")
    return envelope
