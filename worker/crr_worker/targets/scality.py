"""The `scality` target: another CloudServer, written through its `/_/backbeat` routes as Backbeat does.

Each data location (part) of the source version is read from the source's S3 API and stored with
`PUT /_/backbeat/data` (hex Content-MD5, the target account's canonical id); then `PUT /_/backbeat/metadata`
with the source's ObjectMD rewritten for the target (the new locations, the target account as owner, status
REPLICA) creates the replica under the source's own version id and last-modified. A metadata change (tagging,
a delete marker) is a metadata PUT alone; a target that lacks the version then gets the whole copy.

Nothing is left behind: the parts of a copy that fails before its metadata is written are deleted again
(`POST /_/backbeat/batchdelete`); should that fail too, the retry writes the version again and CloudServer
deletes the locations its earlier metadata named (docs/worker.md says which data can still be orphaned).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from crr_worker.aws import load_keys
from crr_worker.backbeat_routes import BackbeatClient, Route
from crr_worker.config import QueueProcessorConfig, SiteConfig
from crr_worker.entries import ReplicationEntry
from crr_worker.logs import log
from crr_worker.object_md import METADATA_ONLY, REPLICA, parse_object_md, wire_version_id
from crr_worker.retry import ReplicationFailed, RetryableError
from crr_worker.sources.base import Source
from crr_worker.targets.bandwidth import site_bandwidth
from crr_worker.targets.base import ReplicaWritten, destination_bucket
from crr_worker.targets.spool import AnyEvent, Spool

LOG = logging.getLogger("crr_worker.targets.scality")
ROLES_TTL_S = 30.0


class ScalityTarget:
    """Writes replicas of a CloudServer source's versions into one scality site."""

    def __init__(self, site: SiteConfig, settings: QueueProcessorConfig):
        self.site = site
        self.settings = settings
        keys = load_keys(site.credentials, "site %s credentials" % site.site)
        scheme = "https" if site.https else "http"
        endpoints = ["%s://%s" % (scheme, server) for server in site.servers]
        pool = settings.concurrency + settings.part_concurrency + 2
        self.client = BackbeatClient(endpoints, site.region, keys, pool, site.read_timeout_s)
        self.parts = ThreadPoolExecutor(settings.part_concurrency, thread_name_prefix="parts-%s" % site.site)
        self.roles: dict[str, tuple[str, float]] = {}  # source bucket -> (its replication role, when read)
        self.bandwidth = site_bandwidth(site.bandwidth_limit)  # shared by every copy of this processor

    def close(self) -> None:
        self.parts.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def probe(self, entry: ReplicationEntry) -> None:
        """A HEAD of the target bucket on the site's servers (one that refuses passes it to the next)."""
        self.client.call(Route("HEAD", "/" + quote(self.destination(entry), safe=""), {}))

    def destination(self, entry: ReplicationEntry) -> str:
        return destination_bucket(self.site, entry)

    def replicate(self, entry: ReplicationEntry, source: Source, stop: threading.Event) -> ReplicaWritten:
        bucket = self.destination(entry)
        self._check_role(entry, source)
        metadata = self._source_metadata(entry, source)
        if entry.is_delete_marker or entry.metadata_only:
            written = self._put_metadata_only(bucket, entry, metadata)
            if written is not None:
                return written
        existing = self.client.get_metadata(bucket, entry.key, entry.version_id)
        if existing is not None and _same_version(existing, metadata):
            return ReplicaWritten(entry.version_id, skipped=True)
        locations = self._copy_data(bucket, entry, metadata, source, stop)
        if locations:  # named here so that data orphaned by a crash before the metadata PUT can be found
            log(LOG, logging.INFO, "replica data stored, writing its metadata", site=self.site.site, bucket=bucket,
                key=entry.key, version_id=entry.version_id, locations=json.dumps(locations))
        try:
            self.client.put_metadata(bucket, entry.key, entry.version_id, self._replica(metadata, locations))
        except BaseException:
            self._delete_orphans(bucket, entry, locations)
            raise
        return ReplicaWritten(entry.version_id, bytes_copied=entry.size)

    def delete_replica(self, entry: ReplicationEntry, source_versions: list) -> ReplicaWritten:
        """A version delete: the replica has the source's version id (a marker's too), so it is one S3 DELETE of
        that version, which S3 answers alike whether or not the version was there."""
        self.client.delete_version(self.destination(entry), entry.key, entry.version_id)
        return ReplicaWritten(entry.version_id)

    def _check_role(self, entry: ReplicationEntry, source: Source) -> None:
        """The entry's role must be the source and target roles the bucket's replication names now: a version
        queued under other roles is FAILED with the reason (Backbeat leaves it PENDING for ever)."""
        roles = [r for r in entry.role.split(",") if r.strip()]
        if len(roles) != 2:
            raise ReplicationFailed("role %r: a scality site needs two roles, '<source-role-arn>,<target-role-arn>'"
                                    % entry.role)
        current, read_at = self.roles.get(entry.bucket, ("", 0.0))
        if time.monotonic() - read_at > ROLES_TTL_S:
            replication = source.replication(entry.bucket)
            current = replication.role if replication is not None else ""
            self.roles[entry.bucket] = (current, time.monotonic())
        if entry.role != current:
            raise ReplicationFailed("role %r is not the bucket's replication role %r" % (entry.role, current))

    def _source_metadata(self, entry: ReplicationEntry, source: Source) -> dict:
        """The version's ObjectMD: the one its entry carries, else read from the source (a retried version)."""
        metadata = parse_object_md(entry.object_md) if entry.object_md else source.object_metadata(
            entry.bucket, entry.key, entry.version_id)
        if metadata is None:
            raise ReplicationFailed("the source version no longer exists")
        return metadata

    def _put_metadata_only(self, bucket: str, entry: ReplicationEntry, metadata: dict) -> ReplicaWritten | None:
        """A delete marker, or a metadata change the target keeps its data for; None when the target has no
        such version yet (it is then copied whole)."""
        headers = None if entry.is_delete_marker else {"x-scal-replication-content": METADATA_ONLY}
        replica = self._replica(metadata, metadata.get("location"))
        try:
            self.client.put_metadata(bucket, entry.key, entry.version_id, replica, headers)
        except Exception as exc:
            if getattr(exc, "code", "") == "ObjNotFound" and headers is not None:
                return None
            raise
        return ReplicaWritten(entry.version_id)

    def _copy_data(self, bucket, entry, metadata, source, stop) -> list[dict] | None:
        """Each source location stored on the target, a bounded number at a time; the new locations in order.
        On any error the ones already stored are deleted again."""
        sources = metadata.get("location")
        if not sources:
            return sources  # an empty object (or a marker): no data, the metadata says so
        give_up = threading.Event()
        futures = [self.parts.submit(self._copy_part, bucket, entry, metadata, index, source, AnyEvent(stop, give_up))
                   for index in range(len(sources))]
        stored, error = [], None
        for future in futures:
            try:
                stored.append(future.result())
            except BaseException as exc:  # noqa: BLE001 - the first error is raised once all parts are settled
                give_up.set()
                error = error or exc
        if error is not None:
            self._delete_orphans(bucket, entry, [loc for loc in stored if loc])
            raise error
        return stored

    def _copy_part(self, bucket, entry, metadata, index, source, stop) -> dict:
        """Location `index` read from the source (whole object, or its part number for a multipart one) and
        stored on the target; its new location."""
        location = metadata["location"][index]
        size = int(location["size"])
        part_number = _part_number(metadata, location)
        opened = source.open_version(entry.bucket, entry.key, entry.version_id, part_number=part_number) \
            if part_number else source.open_version(entry.bucket, entry.key, entry.version_id,
                                                    byte_range=_range(metadata, location))
        with Spool(opened.body, size, self.settings.spool_memory_bytes, stop, self.bandwidth) as (body, md5):
            expected = _expected_md5(metadata, location)
            if expected and md5.hex() != expected:
                raise RetryableError("part %d of %s/%s read with MD5 %s, not %s" % (index + 1, entry.bucket,
                                                                                    entry.key, md5.hex(), expected))
            (stored,) = self.client.put_data(bucket, entry.key, body, size, md5.hex(), self.site.canonical_id)
        return dict(location, **stored)

    def _replica(self, metadata: dict, locations) -> dict:
        """The source ObjectMD as the target's: new locations, the target account as owner, status REPLICA."""
        replica = copy.deepcopy(metadata)
        replica["location"] = locations
        replica["owner-id"] = self.site.canonical_id
        if self.site.display_name:
            replica["owner-display-name"] = self.site.display_name
        info = replica.setdefault("replicationInfo", {})
        info["status"] = REPLICA
        for backend in info.get("backends", []):
            if backend.get("site") == self.site.site:
                backend["status"] = REPLICA
        return replica

    def _delete_orphans(self, bucket: str, entry: ReplicationEntry, locations) -> None:
        """Delete data stored for a copy whose metadata was not written; failure is logged (a retry overwrites)."""
        if not locations:
            return
        try:
            self.client.batch_delete([{k: v for k, v in loc.items() if k != "dataStoreETag"} for loc in locations])
        except Exception as exc:  # noqa: BLE001 - best effort, see the module docstring
            log(LOG, logging.WARNING, "could not delete the data of a copy given up", site=self.site.site,
                bucket=bucket, key=entry.key, version_id=entry.version_id, locations=json.dumps(locations),
                error=str(exc))


def _same_version(existing: dict, metadata: dict) -> bool:
    """Whether the target already holds this version's replica with the same content."""
    return (existing.get("replicationInfo", {}).get("status") == REPLICA
            and wire_version_id(existing.get("versionId", "")) == wire_version_id(metadata.get("versionId", ""))
            and existing.get("content-md5") == metadata.get("content-md5"))


def _expected_md5(metadata: dict, location: dict) -> str:
    """The MD5 a location's bytes must have, where the ObjectMD says it: a multipart object's part, or the
    whole of a single-location object; "" where a location is a slice of a larger body."""
    if metadata.get("uploadId") or len(metadata["location"]) == 1:
        return str(location.get("dataStoreETag", "")).partition(":")[2]
    return ""


def _part_number(metadata: dict, location: dict) -> int | None:
    """The part number of a multipart object's location (`dataStoreETag` is `<part>:<md5>`); None otherwise."""
    if not metadata.get("uploadId"):
        return None
    number = str(location.get("dataStoreETag", "")).partition(":")[0]
    return int(number) if number.isdigit() else None


def _range(metadata: dict, location: dict) -> tuple[int, int] | None:
    """The byte range of a location, None for the whole object (a single location)."""
    if len(metadata["location"]) == 1:
        return None
    start = int(location.get("start", 0))
    return start, start + int(location["size"]) - 1
