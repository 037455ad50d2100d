"""Outcomes written back to a CloudServer source, into each version's ObjectMD, so that `head-object` on the
source shows COMPLETED (or FAILED) as the seed guides expect, with `<site>-version-id` for an aws_s3 location.

The ObjectMD is read fresh (`GET /_/backbeat/metadata`) and only this site's backend is touched, and only while
the version is still in the state this outcome is about (same `content`, same ObjectMD but for replicationInfo,
object_md.md_digest): a user change made meanwhile (a tagging update resets the status to PENDING) owns the
status, and a COMPLETED site never goes back to FAILED. CloudServer has no conditional PUT: a user change
landing between the GET and the PUT is overwritten, the same window Backbeat has (docs/worker.md).
"""

from __future__ import annotations

import logging

from crr_worker.aws import load_keys
from crr_worker.backbeat_routes import BackbeatClient
from crr_worker.config import WorkerConfig
from crr_worker.entries import COMPLETED, FAILED, StatusEntry
from crr_worker.logs import log
from crr_worker.object_md import md_digest, overall_status

LOG = logging.getLogger("crr_worker.sources.cloudserver_status")


class CloudServerStatusWriter:
    """Writes COMPLETED / FAILED outcomes into the source versions' metadata, as the replication account."""

    def __init__(self, config: WorkerConfig):
        keys = load_keys(config.source.credentials, "extensions.replication.source.credentials")
        self.client = BackbeatClient(config.source.endpoint, config.source.region, keys, 2,
                                     config.source.read_timeout_s)

    def write(self, status: StatusEntry) -> bool:
        """Write one outcome; False when there was nothing to write (version gone, newer change, already so)."""
        entry = status.entry
        if entry.deleted:
            return False  # a version delete's outcome: the source version is gone
        metadata = self.client.get_metadata(entry.bucket, entry.key, entry.version_id)
        if metadata is None:
            return False  # deleted since: nothing to show a status on
        info = metadata.get("replicationInfo") or {}
        backend = next((b for b in info.get("backends", []) if b.get("site") == status.site), None)
        changed = tuple(info.get("content") or ()) != entry.content or (
            entry.md_digest and md_digest(metadata) != entry.md_digest)
        if backend is None or changed:
            log(LOG, logging.INFO, "source version changed since; its new change will write the status",
                bucket=entry.bucket, key=entry.key, version_id=entry.version_id, site=status.site)
            return False
        if backend.get("status") == COMPLETED and status.status == FAILED:
            return False
        target_id = status.target_version_id if status.status == COMPLETED else backend.get("dataStoreVersionId", "")
        if backend.get("status") == status.status and backend.get("dataStoreVersionId", "") == target_id:
            return False
        backend["status"] = status.status
        backend["dataStoreVersionId"] = target_id
        info["status"] = overall_status(info["backends"])
        self.client.put_metadata(entry.bucket, entry.key, entry.version_id, metadata)
        return True

    def close(self) -> None:
        self.client.close()
