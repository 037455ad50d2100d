"""Version deletes, for sites with `replicateVersionDeletes: true`: a version deleted from the source by its id is
deleted from those sites too, as MinIO's versioned-delete replication does (AWS S3 replication never does, hence
off by default).

Only a delete naming its version is one: a DELETE without a version id makes a delete marker, which is replicated
as any version. The feed names the version: an S3 `ObjectRemoved:Delete` event's versionId, a CloudServer log's
`del` of a versioned key. The delete goes, as a "del" entry, to the sites the ledger knows the version for: a
version never sent to a site has no replica there. Its processor deletes the replica once the source confirms the
version is gone (crr_worker.replicator), and records COMPLETED for the version, marked deleted.
"""

from __future__ import annotations

from crr_worker.config import WorkerConfig
from crr_worker.entries import ReplicationEntry
from crr_worker.ledger import KnownVersions
from crr_worker.rules import BucketReplication
from crr_worker.sources.base import Change


def version_delete_entries(config: WorkerConfig, replication: BucketReplication, known: KnownVersions,
                           change: Change) -> list[ReplicationEntry]:
    """The "del" entries of a version deleted from the source: one per rule whose sites delete versions and were
    sent this one (its tags are gone: each site is taken under the best rule covering the key)."""
    ids = (change.bucket, change.key, change.version_id)
    entries = []
    for route in replication.routes_ignoring_tags(change.key):
        sites = tuple(s for s in route.sites if _deletes_versions(config, s) and (s, *ids) in known)
        if sites:
            entries.append(ReplicationEntry(
                bucket=change.bucket, key=change.key, version_id=change.version_id, sites=sites,
                destination=route.rule.destination, role=replication.role, storage_class=route.rule.storage_class,
                storage_type=config.find_site(sites[0]).type, deleted=True))
    return entries


def _deletes_versions(config: WorkerConfig, site: str) -> bool:
    found = config.find_site(site)
    return found is not None and found.replicate_version_deletes
