"""The queue populator: source changes in, replication entries out on `backbeat-replication`.

Two feeds meet here. Notifications say which keys changed; the key's versions are then listed, so versions
are enqueued in their order whatever order the notifications came in (and events without a version id, as
moto sends, are resolved too). The reconciliation scan lists whole buckets and enqueues every version the
ledger does not know: it catches missed notifications and objects written before replication was set up.
A notification is acknowledged (the feed's checkpoint) only after its entries are acknowledged by Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from crr_worker.config import WorkerConfig
from crr_worker.entries import FAILED, PENDING, ReplicationEntry, StatusEntry, now_ms
from crr_worker.first_copies import announce, entry_digest, last_announced, version_digest
from crr_worker.kafka_io import ensure_topics, make_producer, send_all
from crr_worker.leadership import Leadership
from crr_worker.ledger import KnownVersions, LedgerReader, LedgerUnavailable, apply_records
from crr_worker.logs import log
from crr_worker.retry import describe, error_code
from crr_worker.rules import NO_SITE, BucketReplication, ReplicationRule, Route, unroutable_reason
from crr_worker.scan_report import ScanReport, send_report
from crr_worker.sources.base import Change, Source, VersionInfo
from crr_worker.sources.s3 import FIRST_SCAN_PAGE
from crr_worker.version_deletes import version_delete_entries

LOG = logging.getLogger("crr_worker.populator")
RULES_TTL_S = 30.0
FLUSH_EVERY = 500
# A scan's first entries are published as soon as there are this many: half the s3 source's first listing page,
# all of which but its last key is known before the next page comes.
FIRST_FLUSH = FIRST_SCAN_PAGE // 2
VANISHED = ("NoSuchKey", "NoSuchVersion", "404")
STANDBY_CHECK_S = 0.2
SCAN_PROGRESS_EVERY_S = 10.0  # a long listing logs its progress this often


class PopulatorError(Exception):
    """The populator cannot go on: the message names what is missing."""


@dataclass
class _CachedRules:
    replication: BucketReplication | None
    read_at: float


@dataclass
class ScanProgress:
    """How far the scan of one bucket got: versions listed and entries queued, logged every SCAN_PROGRESS_EVERY_S,
    and handed each time to `report` (the populator's scan reports, for the API's metrics)."""

    bucket: str
    listed: int = 0
    queued: int = 0
    started: float = field(default_factory=time.monotonic)
    logged: float = field(default_factory=time.monotonic)
    started_at: int = field(default_factory=now_ms)
    report: Callable[[ScanProgress, bool], None] = lambda progress, running: None

    def counted(self, versions: Iterable[VersionInfo]) -> Iterator[VersionInfo]:
        """`versions`, counting each one listed and logging the progress when it is due."""
        for version in versions:
            self.listed += 1
            if time.monotonic() - self.logged >= SCAN_PROGRESS_EVERY_S:
                self.log("scan progress")
            yield version

    def log(self, message: str, running: bool = True) -> None:
        self.logged = time.monotonic()
        elapsed = max(self.logged - self.started, 1e-6)
        log(LOG, logging.INFO, message, bucket=self.bucket, listed=self.listed, queued=self.queued,
            elapsed_s=round(elapsed, 1), listed_per_s=round(self.listed / elapsed, 1))
        self.report(self, running)


@dataclass(frozen=True)
class _Queued:
    """What one rule makes of one version: the entry for the sites processors serve (None when there is none) and
    a FAILED status for each site none serves."""

    entry: ReplicationEntry | None
    failed: tuple[StatusEntry, ...] = ()


class Populator:
    """Turns new versions of replicated buckets into replication entries, each once per site."""

    def __init__(self, config: WorkerConfig, source: Source, stop: threading.Event):
        self.config = config
        self.source = source
        self.stop = stop
        self.rules: dict[str, _CachedRules] = {}
        self.known = KnownVersions(config.state_dir)  # on disk: one digest per known version
        # bucket -> (its rules, {version ids: rule}) for versions whose rule needed their tags
        self.decisions: dict[str, tuple] = {}
        self.producer = None
        self.leadership: Leadership | None = None  # None outside run(): scan() then goes through every bucket
        self.ledger: LedgerReader | None = None
        self.published = 0
        self.ignored_buckets: set[str] = set()  # named by changes but outside source.buckets (logged once each)
        self.unroutable_rules: set[tuple[str, str]] = set()  # (bucket, rule id) sending versions nowhere, logged
        self.marks_first_copies = False  # only the active populator, once it read what its predecessor announced
        self.unsure: set[bytes] = set()  # the predecessor's last announced first copies (crr_worker.first_copies)
        self.unserved: dict[bytes, StatusEntry] = {}  # PENDING in the ledger for sites no processor serves

    def run(self) -> None:
        """While this is the active populator: scan at start and every scanIntervalS, and between scans follow
        the notifications. Otherwise stand by, ready to take over."""
        ensure_topics(self.config)
        log(LOG, logging.INFO, "populator started", source=self.config.log_source)
        next_scan = 0.0
        try:
            self.producer = make_producer(self.config)
            self.leadership = Leadership(self.config, self.stop)
            self._learn_from_ledger()  # while the group forms: the first scan then reads only what is new
            while not self.stop.is_set():
                if not self.leadership.check():
                    self.stop.wait(STANDBY_CHECK_S)
                    continue
                if self.leadership.took_over():
                    next_scan = 0.0  # scan first: the previous leader may have stopped mid-way
                    self.source.take_over()  # and resume the feed where it checkpointed
                    self.take_over_first_copies()
                if time.monotonic() >= next_scan:
                    next_scan = self._scan_on_schedule()
                wait_s = max(0.0, min(5.0, next_scan - time.monotonic()))
                batch = self.source.read_changes(self.stop, wait_s)
                if not self._leading():
                    continue  # not checkpointed: the messages come back to the queue, for the new leader
                if batch.changes:
                    self.handle(batch.changes)
                batch.checkpoint()
        except LedgerUnavailable:
            if not self.stop.is_set():
                raise  # a ledger read cut short by the stop is a clean stop, not a fatal error
        finally:
            if self.leadership is not None:
                self.leadership.close()  # first: a standby takes over while the rest closes
            if self.producer is not None:
                self.producer.close(timeout=10)
            if self.ledger is not None:
                self.ledger.close()
            log(LOG, logging.INFO, "populator stopped", published=self.published)

    def take_over_first_copies(self) -> None:
        """Mark first copies from now on, except the versions the previous active populator announced last: it may
        have published them without their PENDING marks (crr_worker.first_copies)."""
        self.unsure = last_announced(self.config)
        self.marks_first_copies = True

    def _scan_on_schedule(self) -> float:
        """Scan; returns when to scan next: after scanIntervalS, or at once if leadership lapsed meanwhile (the
        scan stopped part-way, or another populator may have led). A lapse between scans needs no new one when
        this populator gets the lead back from itself: the notifications it did not checkpoint come back."""
        started = time.monotonic()
        self.scan()
        if not self.leadership.held_since(started):
            return 0.0
        return time.monotonic() + self.config.source.scan_interval_s

    def scan(self) -> int:
        """Enqueue every version of every replicated bucket that the ledger does not know; returns how many.

        A populator that lost its leadership meanwhile stops at the next version it lists.
        """
        self._learn_from_ledger()
        self._fail_unserved()
        count = 0
        for bucket in self.source.buckets():
            if self.stop.is_set() or not self._leading():
                break
            replication = self._replication(bucket, fresh=True)
            if replication is not None and replication.enabled:
                progress = ScanProgress(bucket, report=self._report_scan)
                self._report_scan(progress, True)
                count += self.enqueue(replication, progress.counted(self.source.list_versions(bucket)), progress)
                progress.log("scan of bucket done", running=False)
        log(LOG, logging.INFO, "scan done", enqueued=count)
        return count

    def _leading(self) -> bool:
        """Whether this populator may publish: it is the active one, or runs outside run() (no leadership)."""
        return self.leadership is None or self.leadership.check()

    def _learn_from_ledger(self) -> None:
        """Add the versions the ledger learned since the last reading to the known ones: the whole ledger at the
        first, then only its new records (re-reading all of it every scan costs time that grows with the ledger).
        The PENDING statuses among them of sites no processor serves are kept in `unserved`."""
        if self.ledger is None:
            self.ledger = LedgerReader(self.config, self.stop)
        for records in self.ledger.batches_to_end(self.stop):
            stored = apply_records({}, records)
            self.known.learn(stored)
            for status in stored:
                if status.status == PENDING and self.config.find_site(status.site) is None:
                    self.unserved[status.ledger_key] = status
                else:
                    self.unserved.pop(status.ledger_key, None)

    def _fail_unserved(self) -> None:
        """FAILED, in their own generation, for PENDING versions of sites no processor serves, which would stay
        PENDING for ever: a `crr-worker retry` of an unroutable version, or one queued before the populator failed
        them (none for a CloudServer source, whose sites CloudServer decides). The reason is the rule's when the
        bucket's rules still send the version there."""
        pending, self.unserved = list(self.unserved.values()), {}
        if self.config.cloudserver_source:
            return
        failed = [StatusEntry(s.entry, s.site, FAILED, reason=self._reason_now(s)) for s in pending]
        for start in range(0, len(failed), FLUSH_EVERY):
            send_all(self.producer, self.config.status_topic, [s.to_kafka() for s in failed[start:start + FLUSH_EVERY]])

    def _reason_now(self, status: StatusEntry) -> str:
        """Why a version PENDING for a site no processor serves fails: its rule's reason when the bucket's rules
        still send it there."""
        entry = status.entry
        replication = self._replication(entry.bucket)
        if replication is not None:
            version = VersionInfo(entry.bucket, entry.key, entry.version_id, is_delete_marker=entry.is_delete_marker)
            for route in self._routes(replication, version):
                if status.site in route.sites:
                    return self._unroutable(replication.bucket, route.rule, status.site)
        return ("site %s is not in destination.bootstrapList, and no rule of bucket %s sends this version there now"
                % (status.site, entry.bucket))

    def handle(self, changes: list[Change]) -> int:
        """Enqueue the unknown versions of the keys named by `changes`; returns how many.

        The whole batch is published together (entries, one flush, PENDING marks, one flush) rather than key by
        key; the caller checkpoints the feed only after this returns. Keys without an exact version are listed
        together (source.list_keys_versions), once per key per batch.
        """
        to_list: dict[str, list[str]] = {}
        exact: list[tuple[BucketReplication, VersionInfo]] = []
        decided: list[_Queued] = []
        removed: list[Change] = []
        seen = set()
        for change in changes:
            if not self._in_scope(change.bucket):
                continue
            if change.removed:
                removed.append(change)
                continue
            if change.entry is not None:  # the source decided (CloudServer): in the feed's order
                decided.append(_Queued(replace(change.entry, first_copy=self._first_copy(change.entry))))
                continue
            exact_id = change.version.version_id if change.version else None
            if (change.bucket, change.key, exact_id) in seen:
                continue
            seen.add((change.bucket, change.key, exact_id))
            replication = self._replication(change.bucket)
            if replication is None or not replication.sites_for(change.key):
                continue
            if change.version:
                exact.append((replication, change.version))
            elif change.version_id and self._queued(replication, (change.bucket, change.key, change.version_id)):
                continue  # the listing that enqueued this version also enqueued every older one
            else:
                to_list.setdefault(change.bucket, []).append(change.key)
        queued = decided + [q for replication, version in exact for q in self._entries(replication, version)]
        for bucket, keys in to_list.items():
            replication = self._replication(bucket)
            for versions in self.source.list_keys_versions(bucket, keys).values():
                queued.extend(q for version in versions
                              for q in self._entries(replication, version, newest=version is versions[-1]))
        count = 0
        for start in range(0, len(queued), FLUSH_EVERY):
            count += self._publish(queued[start:start + FLUSH_EVERY])
        # after the batch's entries: a version written and deleted within one batch is known by now
        deletes = [entry for change in removed for entry in self._version_deletes(change)]
        if deletes:  # no PENDING mark: the version keeps its status until its replica is deleted
            send_all(self.producer, self.config.topic, [e.to_kafka() for e in deletes])
            self.published += len(deletes)
        return count + len(deletes)

    def _version_deletes(self, change: Change) -> list[ReplicationEntry]:
        """The "del" entries of a version the feed reports deleted (crr_worker.version_deletes); none unless a site
        has replicateVersionDeletes."""
        if not change.version_id or not any(site.replicate_version_deletes for site in self.config.sites):
            return []
        replication = self._replication(change.bucket)
        if replication is None:
            return []
        return version_delete_entries(self.config, replication, self.known, change)

    def _report_scan(self, progress: ScanProgress, running: bool) -> None:
        """Write how far the scan of a bucket got to the control topic, for the API (scan_report.send_report)."""
        report = ScanReport(progress.bucket, progress.listed, progress.queued, running, progress.started_at, now_ms())
        send_report(self.config, self.producer, report)

    def _in_scope(self, bucket: str) -> bool:
        """Whether `bucket` is one of `source.buckets` (any bucket when none are listed: discovery). A notification
        queue may carry events of other buckets (a shared queue, a bucket configured by hand): they are ignored,
        logged once per bucket."""
        scope = self.config.source.buckets
        if not scope or bucket in scope:
            return True
        if bucket not in self.ignored_buckets:
            self.ignored_buckets.add(bucket)
            log(LOG, logging.WARNING, "ignoring changes of a bucket not in source.buckets", bucket=bucket)
        return False

    def _replication(self, bucket: str, fresh: bool = False) -> BucketReplication | None:
        cached = self.rules.get(bucket)
        if fresh or cached is None or time.monotonic() - cached.read_at > RULES_TTL_S:
            cached = _CachedRules(self.source.replication(bucket), time.monotonic())
            self.rules[bucket] = cached
        return cached.replication

    def enqueue(self, replication: BucketReplication, versions: Iterable[VersionInfo],
                progress: ScanProgress | None = None) -> int:
        """Publish entries for versions matching a rule, then their PENDING marks; waits for Kafka's acks. Returns
        how many entries were published (counted in `progress` too). The scan's publishing, also used by
        `crr-worker resync` and `verify --repair` (whose populator marks no first copies: it is not the active one)."""
        progress = progress or ScanProgress(replication.bucket)
        queued: list[_Queued] = []
        flush_at = min(FIRST_FLUSH, FLUSH_EVERY)  # the copies start while the rest is listed
        for version, newest in _with_newest(versions):
            if not self._leading():
                return progress.queued  # the new leader's scan lists the rest, with what was taken, not published
            queued.extend(self._entries(replication, version, newest=newest))
            if len(queued) >= flush_at:
                progress.queued += self._publish(queued)
                queued, flush_at = [], FLUSH_EVERY
        progress.queued += self._publish(queued)
        return progress.queued

    def _entries(self, replication: BucketReplication, version: VersionInfo, newest: bool = False) -> list[_Queued]:
        """What to publish for a version, for each rule sending it to sites that do not know it yet: the entry for
        the sites processors serve, FAILED for the others (a StorageClass naming no configured site, or no site).
        The entries of the `newest` version of its key are first copies when this populator marks them."""
        ids = (version.bucket, version.key, version.version_id)
        if self._queued(replication, ids):
            return []
        queued = []
        for route in self._routes(replication, version):
            sites = tuple(s for s in route.sites if (s, *ids) not in self.known)
            if not sites:
                continue
            served = tuple(s for s in sites if self.config.find_site(s) is not None)
            entry = ReplicationEntry(
                bucket=version.bucket, key=version.key, version_id=version.version_id,
                is_delete_marker=version.is_delete_marker, size=version.size, etag=version.etag.strip('"'),
                last_modified=version.last_modified, sites=served, destination=route.rule.destination,
                role=replication.role, storage_class=route.rule.storage_class,
                storage_type=self.config.find_site(served[0]).type if served else "aws_s3",
                first_copy=newest and self.marks_first_copies and not version.is_delete_marker
                and version_digest(*ids) not in self.unsure,
            )
            failed = tuple(StatusEntry(replace(entry, sites=(site,)), site, FAILED,
                                       reason=self._unroutable(replication.bucket, route.rule, site))
                           for site in sites if site not in served)
            queued.append(_Queued(entry if served else None, failed))
        return queued

    def _unroutable(self, bucket: str, rule: ReplicationRule, site: str) -> str:
        """Why `rule` cannot send versions to `site`, which no processor serves; logged once per bucket and rule."""
        configured = ", ".join(s.site for s in self.config.sites)
        if site == NO_SITE % rule.rule_id:
            why = ("of bucket %s names no site: it has no destination StorageClass, and no site of "
                   "destination.bootstrapList (%s) is marked default" % (bucket, configured))
        else:
            why = ("of bucket %s names site %s (its destination StorageClass is %r), which is not in "
                   "destination.bootstrapList (%s): a rule's StorageClass names the sites to replicate to"
                   % (bucket, site, rule.storage_class, configured))
        if (bucket, rule.rule_id) not in self.unroutable_rules:
            self.unroutable_rules.add((bucket, rule.rule_id))
            log(LOG, logging.ERROR, "versions of a rule go to a site no processor serves: they are FAILED",
                bucket=bucket, rule=rule.rule_id, site=site, storage_class=rule.storage_class, sites=configured)
        return unroutable_reason(rule.rule_id, why)

    def _first_copy(self, entry: ReplicationEntry) -> bool:
        """Whether an entry the source decided (CloudServer's feed, in the log's order) is a first copy: a new
        version's data, new to each of its sites."""
        return (self.marks_first_copies and "DATA" in entry.content and not entry.is_delete_marker
                and entry_digest(entry) not in self.unsure
                and not any((site, entry.bucket, entry.key, entry.version_id) in self.known for site in entry.sites))

    def _queued(self, replication: BucketReplication, ids: tuple[str, str, str]) -> bool:
        """Whether the version is known for every site it goes to, as far as that is known without a request:
        its rule's sites once decided, else every site of the rules covering its key."""
        decided = self._decisions(replication, ids[0])
        if ids in decided:
            sites = [site for route in decided[ids] for site in route.sites]
        else:
            sites = replication.sites_for(ids[1])
        return all((site, *ids) in self.known for site in sites)

    def _routes(self, replication: BucketReplication, version: VersionInfo) -> tuple[Route, ...]:
        """The version's rules and their sites. A decision that needed its tags is remembered (until the bucket's
        rules change): S3 too decides when a version is written, and each reading costs a request."""
        ids = (version.bucket, version.key, version.version_id)
        decided = self._decisions(replication, version.bucket)
        if ids in decided:
            return decided[ids]
        read = []

        def read_tags() -> dict[str, str]:
            read.append(ids)
            return self._read_tags(version)

        routes = replication.routes_for(version.key, read_tags, delete_marker=version.is_delete_marker)
        if read:
            decided[ids] = routes
        return routes

    def _decisions(self, replication: BucketReplication, bucket: str) -> dict:
        rules, decided = self.decisions.get(bucket, (None, {}))
        if rules != replication.rules:
            decided = {}
            self.decisions[bucket] = (replication.rules, decided)
        return decided

    def _read_tags(self, version: VersionInfo) -> dict[str, str]:
        """The version's tags for a tag-filtered rule; a version deleted since it was listed has none."""
        try:
            return self.source.version_tags(version.bucket, version.key, version.version_id)
        except Exception as exc:
            if error_code(exc) in VANISHED:
                return {}
            raise PopulatorError("cannot read the tags of %s/%s version %s, which a tag-filtered rule needs (%s); "
                                 "the source credentials need s3:GetObjectVersionTagging"
                                 % (version.bucket, version.key, version.version_id, describe(exc))) from exc

    def _publish(self, queued: list[_Queued]) -> int:
        """Entries first (acknowledged), then their PENDING marks with the FAILED statuses of sites no processor
        serves; only then are the versions known. Returns how many entries were published."""
        entries = [q.entry for q in queued if q.entry is not None]
        statuses = [StatusEntry(e, site, PENDING) for e in entries for site in e.sites]
        statuses += [status for q in queued for status in q.failed]
        if not entries and not statuses:
            return 0
        if entries:
            announce(self.producer, self.config, entries)  # first, so that a successor knows them (first_copies)
            send_all(self.producer, self.config.topic, [e.to_kafka() for e in entries])
        send_all(self.producer, self.config.status_topic, [s.to_kafka() for s in statuses])
        self.known.learn(statuses)
        self.published += len(entries)
        return len(entries)


def _with_newest(versions: Iterable[VersionInfo]) -> Iterator[tuple[VersionInfo, bool]]:
    """Each version, and whether it is the newest of its key: a listing gives each key's versions together, oldest
    first (Source.list_versions)."""
    previous = None
    for version in versions:
        if previous is not None:
            yield previous, (previous.bucket, previous.key) != (version.bucket, version.key)
        previous = version
    if previous is not None:
        yield previous, True
