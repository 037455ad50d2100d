"""The work of a site's processor, apart from its Kafka engine: one replication entry in, its outcome out.

crr_worker.processor polls, orders versions by key, publishes outcomes and commits; the Replicator runs on its
copying threads and only turns a record's value into a status: COMPLETED with the target version id, or FAILED
with the reason (and, when the reason may pass, the time of its automatic replay).
"""

from __future__ import annotations

import logging
import threading

from crr_worker.config import WorkerConfig
from crr_worker.entries import COMPLETED, FAILED, EntryError, ReplicationEntry, StatusEntry, now_ms
from crr_worker.logs import log
from crr_worker.outage import SiteHold
from crr_worker.retry import ReplicationFailed, Stopped, call_with_retries, describe
from crr_worker.sources.base import Source
from crr_worker.targets.base import ReplicaWritten, Target

LOG = logging.getLogger("crr_worker.processor")


class Replicator:
    """Replicates entries to one site within its retry budget; `counts` are its totals, for the stop log line."""

    def __init__(self, config: WorkerConfig, site: str, source: Source, target: Target, stop: threading.Event):
        self.config = config
        self.site = config.site(site)
        self.source, self.target = source, target
        self.hold = SiteHold(self.site.site, stop)  # set while the site is down (an outage, not a failure)
        self.counts = {"completed": 0, "failed": 0, "skipped": 0, "first_copies": 0, "bytes": 0}
        self.lock = threading.Lock()  # counts are added to by every copying thread

    def process(self, value: bytes, where: str, give_up, first_delivery: bool = False) -> StatusEntry | bool:
        """The outcome to publish of one record; True when there is none (done), False when abandoned (Stopped).

        `where` names the record in the log (partition and offset); `give_up` is set when the copy must stop;
        `first_delivery` says no processor can have handled the record before (a first copy's condition)."""
        try:
            entry = ReplicationEntry.from_kafka(value)
        except EntryError as exc:
            log(LOG, logging.ERROR, "skipping a message that is not a replication entry", record=where,
                error=str(exc))
            return True
        if self.site.site not in entry.sites:
            return True
        try:
            return self.replicate(entry if first_delivery else entry.checked(), give_up)
        except Stopped:
            return False

    def replicate(self, entry: ReplicationEntry, give_up) -> StatusEntry | bool:
        """The outcome of replicating `entry` within the site's retry budget (True: none, see _delete_replica);
        raises Stopped once `give_up` is set."""
        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log(LOG, logging.WARNING, "retrying", site=self.site.site, bucket=entry.bucket, key=entry.key,
                version_id=entry.version_id, attempt=attempt, delay_s=round(delay, 2), error=describe(exc))

        tries = []  # the first as it came; a later one is checked: the write before it may have been done (lost reply)

        def operation() -> ReplicaWritten | None:
            current = entry.checked() if tries else entry
            tries.append(current)
            if current.deleted:
                return self._delete_replica(current)
            return self.target.replicate(current, self.source, give_up)

        try:  # the probe tells an outage of the site from an error of the version (crr_worker.outage)
            written = call_with_retries(operation, self.site.retry, give_up, on_retry=on_retry,
                                        hold=self.hold, probe=lambda: self.target.probe(entry))
        except ReplicationFailed as exc:
            return self._failed(entry, exc.reason, exc.transient)
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still end as a visible FAILED, not a silent skip
            LOG.exception("unexpected error")
            return self._failed(entry, "internal error: %s" % describe(exc))
        if written is None:
            return True
        self._count("skipped" if written.skipped else "completed", written.bytes_copied)
        if tries[-1].first_copy:
            self._count("first_copies")
        return StatusEntry(entry, self.site.site, COMPLETED, target_version_id=written.target_version_id)

    def _delete_replica(self, entry: ReplicationEntry) -> ReplicaWritten | None:
        """A version delete: the replica goes once the source confirms the version is gone. None when the source
        still has it (a stale or stray event): the replica stays, and so does the version's status in the ledger."""
        versions = list(self.source.list_versions(entry.bucket, entry.key))
        if any(v.version_id == entry.version_id for v in versions):
            log(LOG, logging.WARNING, "a version delete names a version the source still has: its replica is kept",
                site=self.site.site, bucket=entry.bucket, key=entry.key, version_id=entry.version_id)
            return None
        removed = self.target.delete_replica(entry, versions)
        log(LOG, logging.INFO, "version delete replicated", site=self.site.site, bucket=entry.bucket, key=entry.key,
            version_id=entry.version_id, removed=removed.target_version_id or "no replica")
        return removed

    def _failed(self, entry: ReplicationEntry, reason: str, transient: bool = False) -> StatusEntry:
        """FAILED with the reason and where; when the reason may pass and replays are left, with the time of the
        automatic replay (the status processor re-queues it then)."""
        replay = self.config.replay
        replay_at = 0
        if transient and entry.replay_count < replay.retries:
            replay_at = now_ms() + replay.delay_ms(entry.replay_count)
        try:
            where = "target bucket %s on site %s" % (self.target.destination(entry), self.site.site)
        except ReplicationFailed:
            where = "site %s" % self.site.site
        self._count("failed")
        log(LOG, logging.ERROR, "replication failed", site=self.site.site, bucket=entry.bucket, key=entry.key,
            version_id=entry.version_id, reason=reason, replay_at=replay_at)
        return StatusEntry(entry, self.site.site, FAILED, reason="%s [%s]" % (reason, where), replay_at=replay_at)

    def _count(self, outcome: str, copied: int = 0) -> None:
        with self.lock:
            self.counts[outcome] += 1
            self.counts["bytes"] += copied
