"""The `cloudserver` source: Scality CloudServer / S3 Connector, Backbeat's `dmd` and `bucketd` feeds.

Changes come from the metadata log, where every write appears with the version's whole ObjectMD; CloudServer
has already decided what to replicate (`replicationInfo`: sites, role, destination), so entries carry that
decision as is and no rule is read here. Versions, data and tags are read through CloudServer's S3 API,
signed by the replication service account. What the log holds besides new PENDING versions is skipped:
bucket records (`__metastore`, `users..bucket`), MPU shadow buckets, master keys (each write logs the master
and the version with the same ObjectMD), placeholders (isPHD), deletes but of a version by its id (a site may
replicate them: crr_worker.version_deletes), and our own status writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from crr_worker.aws import load_keys
from crr_worker.backbeat_routes import BackbeatClient
from crr_worker.checkpoints import Checkpoints
from crr_worker.config import WorkerConfig
from crr_worker.entries import VERSION_SEPARATOR, ReplicationEntry
from crr_worker.kafka_io import make_producer
from crr_worker.logs import log
from crr_worker.object_md import PENDING, parse_object_md, pending_sites, wire_version_id
from crr_worker.rules import BucketReplication
from crr_worker.sources.base import Change, ChangeBatch, SourceObject, VersionInfo
from crr_worker.sources.record_log import ChangeLog, LogRecord, RecordLogError
from crr_worker.sources.s3 import S3Source

LOG = logging.getLogger("crr_worker.sources.cloudserver")
NOT_OBJECT_DBS = ("__metastore", "users..bucket")
SHADOW_PREFIX = "mpuShadowBucket"
MAX_BACKOFF_S = 30.0


class CloudServerSource:
    """Reads one CloudServer: changes from its logs, versions and data from its S3 API."""

    def __init__(self, config: WorkerConfig, logs: list[ChangeLog], pool: int = 16):
        self.config = config
        self.logs = logs
        # no scan here (the log is the feed): resync lists in pages of 1,000
        self.s3 = S3Source(config.source, None, pool=pool, first_scan_page=None)
        self.sites = frozenset(s.site for s in config.sites)
        self.site_status_keys = frozenset("%s-%s" % (site, suffix) for site in self.sites
                                          for suffix in ("replication-status", "version-id"))
        self.only_buckets = frozenset(config.source.buckets)
        self.positions: dict[str, int] | None = None  # next seq per log, as last checkpointed
        self.checkpoints: Checkpoints | None = None
        self.failures = 0
        self.unserved: set[tuple[str, str]] = set()  # (bucket, site) already warned about
        self.metadata: BackbeatClient | None = None

    # Versions, data and tags: CloudServer's S3 API, read as from any S3 source.
    def list_versions(self, bucket: str, key: str | None = None) -> Iterator[VersionInfo]:
        return self.s3.list_versions(bucket, key)

    def list_keys_versions(self, bucket: str, keys: list[str]) -> dict[str, list[VersionInfo]]:
        return self.s3.list_keys_versions(bucket, keys)

    def open_version(self, bucket: str, key: str, version_id: str, byte_range: tuple[int, int] | None = None,
                     part_number: int | None = None) -> SourceObject:
        """The version as the S3 GET gives it, less the `<site>-replication-status` / `<site>-version-id` user
        metadata CloudServer adds to the response for sites of an aws_s3 location: not the user's, and stale on
        a replica."""
        opened = self.s3.open_version(bucket, key, version_id, byte_range, part_number)
        opened.metadata = {k: v for k, v in opened.metadata.items() if k not in self.site_status_keys}
        return opened

    def object_metadata(self, bucket: str, key: str, version_id: str) -> dict | None:
        """The version's ObjectMD, read from the source's /_/backbeat route; None once it no longer exists."""
        if self.metadata is None:
            keys = load_keys(self.config.source.credentials, "extensions.replication.source.credentials")
            self.metadata = BackbeatClient(self.config.source.endpoint, self.config.source.region, keys, 4,
                                           self.config.source.read_timeout_s)
        return self.metadata.get_metadata(bucket, key, version_id)

    def version_tags(self, bucket: str, key: str, version_id: str) -> dict[str, str]:
        return self.s3.version_tags(bucket, key, version_id)

    def buckets(self) -> list[str]:
        """None to scan: the log is the feed (versions written before are queued by `crr-worker resync`)."""
        return []

    def replication(self, bucket: str) -> BucketReplication | None:
        return self.s3.replication(bucket)

    def take_over(self) -> None:
        """Forget the positions read so far: another populator may have read and checkpointed further."""
        self.positions = None

    def read_changes(self, stop: threading.Event, wait_s: float) -> ChangeBatch:
        """The next PENDING versions of every log; checkpoint() records how far they were read.

        An empty read waits `pollIntervalS` (at most `wait_s`); a failed one backs off and reads the same range
        again, so a range is never skipped.
        """
        if self.positions is None:
            self.positions = self._start_positions(stop)
        changes: list[Change] = []
        advanced: dict[str, int] = {}
        try:
            for change_log in self.logs:
                page = change_log.read(self.positions[change_log.name], self.config.record_log.batch_max_read)
                changes.extend(c for r in page.records if (c := self.change_of(r)))
                if page.next_seq != self.positions[change_log.name]:
                    advanced[change_log.name] = page.next_seq
        except RecordLogError as exc:
            self._back_off(stop, exc)
            return ChangeBatch([])
        self.failures = 0
        if not advanced:
            stop.wait(min(wait_s, self.config.record_log.poll_interval_s))
            return ChangeBatch([])

        def checkpoint() -> None:
            self._checkpoints().save(advanced)
            self.positions.update(advanced)

        return ChangeBatch(changes, checkpoint)

    def change_of(self, record: LogRecord) -> Change | None:
        """What a log record says: a new PENDING version to replicate (entry_of), or a version deleted by its id
        (a `del` of the versioned key, for crr_worker.version_deletes); None for everything else."""
        if record.type == "del" and VERSION_SEPARATOR in record.key and self._watched(record.db):
            key, _, version_id = record.key.partition(VERSION_SEPARATOR)
            return Change(record.db, key, version_id=wire_version_id(version_id), removed=True)
        entry = self.entry_of(record)
        return Change(entry.bucket, entry.key, entry=entry) if entry is not None else None

    def _watched(self, db: str) -> bool:
        """Whether records of `db` are object versions of a bucket this worker replicates from."""
        return _object_db(db) and (not self.only_buckets or db in self.only_buckets)

    def entry_of(self, record: LogRecord) -> ReplicationEntry | None:
        """The replication entry of a log record: only a new PENDING version of an object, for the sites
        served here; None for everything else the log holds."""
        if record.type != "put" or VERSION_SEPARATOR not in record.key or not self._watched(record.db):
            return None
        metadata = parse_object_md(record.value)
        if metadata is None or (metadata.get("replicationInfo") or {}).get("status") != PENDING:
            return None
        wanted = pending_sites(metadata)
        sites = tuple(s for s in wanted if s in self.sites)
        self._warn_unserved(record.db, [s for s in wanted if s not in self.sites])
        if not sites:
            return None
        key = record.key.split(VERSION_SEPARATOR, 1)[0]
        return ReplicationEntry.from_object_md(record.db, key, record.value, sites)

    def _start_positions(self, stop: threading.Event) -> dict[str, int]:
        """Each log's checkpoint; a log without one starts at its oldest record or its end (`startFrom`)."""
        saved = self._checkpoints().load(stop)
        positions = {}
        for change_log in self.logs:
            if change_log.name in saved:
                positions[change_log.name] = saved[change_log.name]
            elif self.config.record_log.start_from == "end":
                positions[change_log.name] = change_log.end_seq()
            else:
                positions[change_log.name] = 1
            log(LOG, logging.INFO, "reading the change log", log=change_log.name, seq=positions[change_log.name],
                checkpointed=change_log.name in saved)
        return positions

    def _checkpoints(self) -> Checkpoints:
        if self.checkpoints is None:
            self.checkpoints = Checkpoints(self.config, make_producer(self.config))
        return self.checkpoints

    def _back_off(self, stop: threading.Event, exc: Exception) -> None:
        delay = min(MAX_BACKOFF_S, 0.5 * 2 ** self.failures)
        self.failures += 1
        log(LOG, logging.WARNING, "cannot read the change log; reading the same range again later",
            error=str(exc), delay_s=delay)
        stop.wait(delay)

    def _warn_unserved(self, bucket: str, sites: list[str]) -> None:
        """Say once per bucket and site that CloudServer wants a site this worker has no processor for."""
        for site in sites:
            if (bucket, site) not in self.unserved:
                self.unserved.add((bucket, site))
                log(LOG, logging.WARNING, "versions name a site that is not in the worker's bootstrapList; they "
                    "stay PENDING on the source for it", bucket=bucket, site=site)

    def close(self) -> None:
        self.s3.close()
        if self.metadata is not None:
            self.metadata.close()
        if self.checkpoints is not None:
            self.checkpoints.producer.close(timeout=5)


def _object_db(db: str) -> bool:
    """Whether records of `db` are object versions: not bucket metadata, not an MPU's shadow bucket."""
    return bool(db) and db not in NOT_OBJECT_DBS and not db.startswith(SHADOW_PREFIX)
