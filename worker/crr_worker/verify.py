"""`crr-worker verify`: proof that a bucket's replica is complete, from both sides' listings, not the ledger's.

The ledger says what the worker believes; verify compares the source bucket's versions and delete markers with the
site's target bucket's, key by key. Both ListObjectVersions listings are sorted by key, so they are walked together
holding one key's versions at a time (a batch of keys while their replicas are HEADed, HEADS at a time). Only the
versions the bucket's rules send to the site count. An aws_s3 replica is known by its x-amz-meta-scal-version-id; a
delete marker has no metadata and is matched by its place among the key's markers. A scality replica has the
source's own version id.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TextIO

from botocore.exceptions import ClientError

from crr_worker.aws import load_keys, make_client
from crr_worker.config import SiteConfig, WorkerConfig
from crr_worker.kafka_io import ensure_topics, make_producer
from crr_worker.registry import make_source
from crr_worker.retry import describe, error_code
from crr_worker.rules import BucketReplication
from crr_worker.sources.base import VersionInfo
from crr_worker.sources.s3 import keep_listing_order, version_pages
from crr_worker.targets.aws_s3 import REPLICA_STATUS_KEY, SOURCE_VERSION_KEY

MISSING, EXTRA, MISMATCH, ORDER, LATEST = "missing", "extra", "mismatch", "order", "latest"
KINDS = (MISSING, EXTRA, MISMATCH, ORDER, LATEST)
SUMMARY_NAMES = {MISSING: "missing", EXTRA: "extra", MISMATCH: "mismatched", ORDER: "out of order",
                 LATEST: "latest differing"}
REPAIRED = (MISSING, MISMATCH)  # what --repair re-queues: the processor cannot reorder a key's replicas
HEADS = 8  # HEADs of target versions in flight at once
BATCH_VERSIONS = 256  # target versions of the keys held at once, HEADed together
REQUEUE_EVERY = 500
GONE = ("404", "NoSuchKey", "NoSuchVersion", "NotFound")


class VerifyError(Exception):
    """The verification cannot go on (a listing failed): the message says what."""


class VerifyRefused(VerifyError):
    """Bad usage: the bucket has no replication, or the site does not serve it."""


@dataclass(frozen=True)
class Finding:
    """One difference; `source` is the source version --repair would re-queue."""

    kind: str
    key: str
    version_id: str  # the source version's; "" when no source version is concerned
    detail: str
    target_version_id: str = ""
    source: VersionInfo | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Replica:
    """A target version; `source_version_id` is its scal-version-id (None for a marker or a non-replica)."""

    version: VersionInfo
    source_version_id: str | None = None
    status: str = ""


@dataclass
class Report:
    bucket: str
    site: str
    target_bucket: str
    checked: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    requeued: int | None = None  # None without --repair

    @property
    def agree(self) -> bool:
        return not any(self.counts.values())

    def summary(self) -> str:
        found = ", ".join("%d %s" % (self.counts[kind], SUMMARY_NAMES[kind]) for kind in KINDS)
        line = "verify %s -> site %s (bucket %s): %d versions checked, %s: %s" % (
            self.bucket, self.site, self.target_bucket, self.checked, found, "OK" if self.agree else "DIFFERENT")
        return line if self.requeued is None else "%s, re-queued %d version(s)" % (line, self.requeued)

    def to_dict(self) -> dict:
        return {"summary": True, "bucket": self.bucket, "site": self.site, "target_bucket": self.target_bucket,
                "checked": self.checked, **self.counts, "requeued": self.requeued,
                "result": "OK" if self.agree else "DIFFERENT"}


Emit = Callable[[Finding, Report], None]


def verify(config: WorkerConfig, bucket: str, site: str | None = None, prefix: str = "", repair: bool = False,
           emit: Emit = lambda finding, report: None, stream: TextIO | None = None) -> list[Report]:
    """Compare `bucket` with its replica on each site serving it (or `site`); `emit` gets each finding."""
    source = make_source(config, notifications=False)
    try:
        replication = _replication(source, bucket)
        reports = []
        for served, target_bucket in _targets(config, replication, site):
            check = SiteCheck(config, source, replication, served, target_bucket, prefix, repair)
            try:
                reports.append(check.run(emit, _Progress(stream or sys.stderr)))
            finally:
                check.close()
        return reports
    finally:
        source.close()


def _replication(source, bucket: str) -> BucketReplication:
    try:
        replication = source.replication(bucket)
    except ClientError as exc:
        raise VerifyError("cannot read the replication of bucket %s: %s" % (bucket, describe(exc))) from exc
    if replication is None or not replication.enabled:
        raise VerifyRefused("bucket %s has no enabled replication rule: nothing to verify" % bucket)
    return replication


def _targets(config: WorkerConfig, replication: BucketReplication, site: str | None) -> list[tuple[SiteConfig, str]]:
    """(site, target bucket) pairs to check: the configured sites the bucket's enabled rules name, each with the
    site's bucket or else the destination bucket of each rule naming it (as targets.base.destination_bucket)."""
    pairs = []
    for rule in replication.rules:
        for name in rule.sites if rule.enabled else ():
            served = config.find_site(name)
            target_bucket = (served.bucket or rule.destination.rsplit(":", 1)[-1]) if served else ""
            if served and target_bucket and (site is None or name == site) and (served, target_bucket) not in pairs:
                pairs.append((served, target_bucket))
    if not pairs:
        named = sorted({s for r in replication.rules if r.enabled for s in r.sites})
        raise VerifyRefused("no configured site %sserves bucket %s (its rules name: %s; --site must be one of "
                            "them and in destination.bootstrapList)" % ("%s " % site if site else "",
                                                                         replication.bucket, ", ".join(named)))
    return pairs


class SiteCheck:
    """The comparison of one source bucket with one site's target bucket."""

    def __init__(self, config: WorkerConfig, source, replication: BucketReplication, site: SiteConfig,
                 target_bucket: str, prefix: str, repair: bool):
        self.config, self.source, self.site, self.prefix = config, source, site, prefix
        self.replication = replication
        self.only_site = _for_site(replication, site.site)
        self.report = Report(replication.bucket, site.site, target_bucket, requeued=0 if repair else None)
        self.strip = "" if site.bucket_match else replication.bucket + "/"
        self.target = _target_client(site)
        self.heads = ThreadPoolExecutor(HEADS, thread_name_prefix="verify-head")
        self.to_requeue: list[VersionInfo] = []
        self.populator = None

    def close(self) -> None:
        self.heads.shutdown(wait=True, cancel_futures=True)
        if self.populator is not None:
            self.populator.producer.close(timeout=10)

    def run(self, emit: Emit, progress: _Progress) -> Report:
        source_s3 = self.source.s3
        source_s3 = getattr(source_s3, "s3", source_s3)  # a CloudServer source lists through its S3Source
        sources = _listing(version_pages(source_s3, self.report.bucket, self.prefix), "", self.report.bucket)
        targets = _listing(version_pages(self.target, self.report.target_bucket, self.strip + self.prefix),
                           self.strip, self.report.target_bucket)
        batch, held = [], 0
        for key, source_versions, target_versions in paired_keys(sources, targets):
            batch.append((key, [v for v in source_versions if self._routed(v)], target_versions))
            held += len(target_versions)
            if held >= BATCH_VERSIONS:
                self._check(batch, emit, progress)
                batch, held = [], 0
        self._check(batch, emit, progress)
        self._requeue(final=True)
        progress.done(self.report)
        return self.report

    def _routed(self, version: VersionInfo) -> bool:
        """Whether the bucket's rules send `version` to this site's target bucket (as the populator routes it)."""
        def read_tags() -> dict:
            try:
                return self.source.version_tags(version.bucket, version.key, version.version_id)
            except ClientError as exc:
                if error_code(exc) in GONE:
                    return {}
                raise
        routes = self.replication.routes_for(version.key, read_tags, delete_marker=version.is_delete_marker)
        bucket = self.report.target_bucket
        return any(self.site.site in route.sites
                   and (self.site.bucket or route.rule.destination.rsplit(":", 1)[-1]) == bucket for route in routes)

    def _check(self, batch: list, emit: Emit, progress: _Progress) -> None:
        """Compare the keys of `batch`, their target versions HEADed together first."""
        same_ids = self.site.type == "scality"
        heads = [] if same_ids else [v for _, _, versions in batch for v in versions if not v.is_delete_marker]
        read = dict(zip(((v.key, v.version_id) for v in heads), self.heads.map(self._head, heads)))
        for key, source_versions, target_versions in batch:
            replicas = [read.get((v.key, v.version_id), Replica(v)) for v in target_versions
                        if v.is_delete_marker or same_ids or read.get((v.key, v.version_id)) is not None]
            self.report.checked += len(source_versions)
            for finding in compare_key(key, source_versions, replicas, same_ids):
                self.report.counts[finding.kind] += 1
                if finding.kind in REPAIRED and finding.source is not None and self.report.requeued is not None:
                    self.to_requeue.append(finding.source)
                emit(finding, self.report)
            progress.update(self.report)
        self._requeue()

    def _head(self, version: VersionInfo) -> Replica | None:
        """The target version with its scal-version-id; None when it was deleted since the listing."""
        try:
            head = self.target.head_object(Bucket=self.report.target_bucket, Key=version.key,
                                           VersionId=version.version_id)
        except ClientError as exc:
            if error_code(exc) in GONE:
                return None
            raise VerifyError("cannot read %s version %s in bucket %s of site %s: %s" % (
                version.key, version.version_id, self.report.target_bucket, self.site.site, describe(exc))) from exc
        metadata = head.get("Metadata") or {}
        return Replica(version, metadata.get(SOURCE_VERSION_KEY), metadata.get(REPLICA_STATUS_KEY, ""))

    def _requeue(self, final: bool = False) -> None:
        """Publish the versions to re-queue as new entries with their PENDING marks, as the populator's scan does
        (its own code: Populator.enqueue, for this site only)."""
        if not self.to_requeue or (len(self.to_requeue) < REQUEUE_EVERY and not final):
            return
        if self.populator is None:
            from crr_worker.populator import Populator

            ensure_topics(self.config)
            self.populator = Populator(self.config, self.source, threading.Event())
            self.populator.producer = make_producer(self.config)
        self.report.requeued += self.populator.enqueue(self.only_site, self.to_requeue)
        self.to_requeue = []


def _for_site(replication: BucketReplication, site: str) -> BucketReplication:
    """The bucket's rules sending to `site` only: each rule keeps the sites it took, so the rule deciding for the
    site is the same, and re-queued entries go to no other site."""
    rules = tuple(replace(rule, sites=tuple(s for s in rule.sites if s == site)) for rule in replication.rules)
    return replace(replication, rules=rules)


def _target_client(site: SiteConfig):
    """An S3 client of the site: its endpoint, or a scality site's first server (its S3 API lists versions)."""
    endpoint = site.endpoint
    if site.type == "scality":
        endpoint = "%s://%s" % ("https" if site.https else "http", site.servers[0])
    keys = load_keys(site.credentials, "site %s credentials" % site.site)
    client = make_client("s3", endpoint, site.region, keys, HEADS + 2, site.read_timeout_s)
    keep_listing_order(client)
    return client


def _listing(pages: Iterator[list[VersionInfo]], strip: str, bucket: str) -> Iterator[tuple[str, list]]:
    """`key_groups` of a listing, a listing error raised as VerifyError naming the bucket."""
    try:
        yield from key_groups(pages, strip)
    except ClientError as exc:
        raise VerifyError("cannot list the versions of bucket %s: %s" % (bucket, describe(exc))) from exc


def key_groups(pages: Iterator[list[VersionInfo]], strip: str = "") -> Iterator[tuple[str, list[VersionInfo]]]:
    """(key without `strip`, its versions oldest first), in key order, one key held at a time. A page's keys are
    sorted again: a server listing all versions, then all markers (moto), puts a key of markers only out of place;
    a key whose versions go on in the next page is its last."""
    key, held = None, []
    for page in pages:
        by_key: dict[str, list[VersionInfo]] = {}
        for version in page:
            by_key.setdefault(version.key, []).append(version)
        for name in sorted(by_key):
            if name != key:
                if held:
                    yield key[len(strip):], held[::-1]
                key, held = name, []
            held.extend(by_key[name])
    if held:
        yield key[len(strip):], held[::-1]


def paired_keys(sources: Iterator[tuple[str, list]], targets: Iterator[tuple[str, list]]) -> Iterator[tuple]:
    """(key, source versions, target versions) of every key on either side, in key order: a merge walk."""
    source, target = next(sources, None), next(targets, None)
    while source is not None or target is not None:
        if target is None or (source is not None and source[0] < target[0]):
            yield source[0], source[1], []
            source = next(sources, None)
        elif source is None or target[0] < source[0]:
            yield target[0], [], target[1]
            target = next(targets, None)
        else:
            yield source[0], source[1], target[1]
            source, target = next(sources, None), next(targets, None)


def compare_key(key: str, sources: list[VersionInfo], replicas: list[Replica], same_ids: bool) -> list[Finding]:
    """The differences of one key: `sources` are the source versions sent to the site, `replicas` the target's
    versions, both oldest first."""
    findings: list[Finding] = []
    paired = _pair(key, sources, replicas, same_ids, findings)
    matched = set(paired.values())
    findings += [Finding(MISSING, key, v.version_id, "%s not on the target" % _kind(v), source=v)
                 for i, v in enumerate(sources) if i not in matched]
    for t, i in sorted(paired.items()):
        problem = _mismatch(sources[i], replicas[t], same_ids)
        if problem:
            findings.append(Finding(MISMATCH, key, sources[i].version_id, problem, replicas[t].version.version_id,
                                    source=sources[i]))
    order = [paired[t] for t in sorted(paired)]
    if order != sorted(order):
        findings.append(Finding(ORDER, key, "", "the target's replicas, oldest first, are of source versions %s; "
                                "the source's order is %s" % ([sources[i].version_id for i in order],
                                                              [sources[i].version_id for i in sorted(order)])))
    if sources and replicas and paired.get(len(replicas) - 1) != len(sources) - 1:
        latest = replicas[-1]
        findings.append(Finding(LATEST, key, sources[-1].version_id, "the source's latest is %s %s, the target's is "
                                "%s %s" % (_kind(sources[-1]), sources[-1].version_id, _kind(latest.version),
                                           _replica_name(latest)), latest.version.version_id))
    return findings


def _pair(key: str, sources: list[VersionInfo], replicas: list[Replica], same_ids: bool,
          findings: list[Finding]) -> dict[int, int]:
    """Target index -> source index of each replica; the target versions that are no replica are EXTRA findings.

    Of several replicas of one version, the newest with the source's ETag is its replica, and identical older
    ones are no difference: the processor puts the latest replica back on top, by a copy, after a late older
    version (crr_worker.targets.aws_s3_order). Likewise the delete markers of an aws_s3 target pair with the
    source's from the newest, and older markers beyond the source's count only when the source has none."""
    index = {v.version_id: i for i, v in enumerate(sources) if same_ids or not v.is_delete_marker}
    candidates: dict[int, list[int]] = {}
    for t, replica in enumerate(replicas):
        if replica.version.is_delete_marker and not same_ids:
            continue
        source_id = replica.version.version_id if same_ids else replica.source_version_id
        if source_id in index:
            candidates.setdefault(index[source_id], []).append(t)
        else:
            findings.append(Finding(EXTRA, key, "", _extra_reason(replica, same_ids), replica.version.version_id))
    paired = {}
    for i, found in candidates.items():
        good = [t for t in found if not _mismatch(sources[i], replicas[t], same_ids)]
        best = good[-1] if good else found[-1]
        paired[best] = i
        findings += [Finding(EXTRA, key, sources[i].version_id, "another replica of source version %s" %
                             sources[i].version_id, replicas[t].version.version_id)
                     for t in found if t != best and t not in good]
    if not same_ids:
        source_markers = [i for i, v in enumerate(sources) if v.is_delete_marker]
        target_markers = [t for t, r in enumerate(replicas) if r.version.is_delete_marker]
        pairs = min(len(target_markers), len(source_markers))
        paired.update(zip(target_markers[len(target_markers) - pairs:], source_markers[len(source_markers) - pairs:]))
        surplus = target_markers[:len(target_markers) - pairs]
        if not source_markers:
            findings += [Finding(EXTRA, key, "", "a delete marker where the source has none",
                                 replicas[t].version.version_id) for t in surplus]
    return paired


def _mismatch(source: VersionInfo, replica: Replica, same_ids: bool) -> str:
    """What differs between a source version and its replica ("" when nothing does)."""
    target = replica.version
    if source.is_delete_marker or target.is_delete_marker:
        return "" if source.is_delete_marker == target.is_delete_marker else "a version and a delete marker"
    problems = []
    etags = source.etag.strip('"'), target.etag.strip('"')
    if etags[0] != etags[1] and not any("-" in etag for etag in etags):  # a multipart ETag depends on the parts
        problems.append("ETag %s on the source, %s on the target" % (source.etag, target.etag))
    if source.size != target.size:
        problems.append("size %d on the source, %d on the target" % (source.size, target.size))
    if not same_ids and replica.status != "REPLICA":
        problems.append("%s is %r, not REPLICA" % (REPLICA_STATUS_KEY, replica.status))
    return "; ".join(problems)


def _extra_reason(replica: Replica, same_ids: bool) -> str:
    if same_ids:
        return "a version the source does not have or does not send to this site"
    if replica.source_version_id is None:
        return "not a replica: no x-amz-meta-%s" % SOURCE_VERSION_KEY
    return ("the replica of source version %s, which the source does not have or does not send to this site"
            % replica.source_version_id)


def _kind(version: VersionInfo) -> str:
    return "delete marker" if version.is_delete_marker else "version"


def _replica_name(replica: Replica) -> str:
    if replica.source_version_id:
        return "%s (replica of %s)" % (replica.version.version_id, replica.source_version_id)
    return replica.version.version_id


class _Progress:
    """`verify B -> S: N versions checked, F differences` redrawn on stderr at most every 0.5 s, only on a
    terminal (a log or a pipe gets the summary alone)."""

    def __init__(self, stream: TextIO, clock=time.monotonic):
        self.stream, self.clock = stream, clock
        self.tty = stream.isatty()
        self.shown = clock()

    def update(self, report: Report) -> None:
        if self.tty and self.clock() - self.shown >= 0.5:
            self.shown = self.clock()
            self._show(report)

    def done(self, report: Report) -> None:
        if self.tty:
            self._show(report)
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, report: Report) -> None:
        self.stream.write("\rverify %s -> %s: %d versions checked, %d differences" % (
            report.bucket, report.site, report.checked, sum(report.counts.values())))
        self.stream.flush()
