"""What `/metrics` exposes, in Prometheus text format: outcomes and latencies read from the ledger, lag from Kafka.

The processors run as separate processes, possibly on other hosts, so the API does not ask them: every outcome
they produce ends up in the ledger topic, which the API follows. Counters therefore count ledger records seen
since the API started, the ledger's history included (compaction may have shortened it, so read them with
rate()/increase(), as any counter that can reset). Lag is asked from Kafka at scrape time: the committed
offset of each site's consumer group against the end offset of each partition of the replication topic. The age
of the oldest PENDING version is computed at scrape time against the clock, not at ledger events: a stalled
pipeline writes no ledger record, and its oldest PENDING version must still grow older. The ETA of each site's
PENDING versions divides them by the site's outcomes of the last minutes, counted by the time processors wrote
them (the ledger's history counts too), and is not exported when nothing says when they will be done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from crr_worker.config import WorkerConfig
from crr_worker.entries import COMPLETED, FAILED, PENDING, StatusEntry
from crr_worker.rules import unroutable_rule
from crr_worker.scan_report import ScanReport

# Seconds: sub-second for notified objects up to an hour for a retried or backlogged one.
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
DRAIN_WINDOW_S = 300  # the outcome rate behind crr_pending_eta_seconds: the last 5 min, as the dashboard's rate()s


@dataclass
class Histogram:
    """A Prometheus histogram: counts per upper bound (not cumulative until rendered), sum and count."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.counts[index] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append('%s_bucket{%s,le="%s"} %d' % (name, labels, le, running))
        lines.append("%s_sum{%s} %.3f" % (name, labels, self.total))
        lines.append("%s_count{%s} %d" % (name, labels, self.count))
        return lines


class OutcomeRate:
    """Per site, the versions that left PENDING (COMPLETED or FAILED records) in each second of the last `window_s`,
    by the time their processor wrote them, not the time the API read them: the ledger's history, read at the
    API's start, fills the window at once. One count per second kept, so memory does not grow with the rate."""

    def __init__(self, window_s: int = DRAIN_WINDOW_S):
        self.window_s = window_s
        self.seconds: dict[str, dict[int, int]] = {}  # site -> {epoch second: outcomes written in it}

    def add(self, site: str, at_ms: int, now_s: float) -> None:
        second = at_ms // 1000
        if second > now_s - self.window_s:
            counts = self.seconds.setdefault(site, {})
            counts[second] = counts.get(second, 0) + 1

    def rates(self, now_s: float) -> dict[str, float]:
        """Per site, outcomes per second over the window ending now (seconds older than the window forgotten)."""
        found = {}
        for site, counts in self.seconds.items():
            for second in [second for second in counts if second <= now_s - self.window_s]:
                del counts[second]
            found[site] = sum(counts.values()) / self.window_s
        return found


@dataclass
class SiteCounters:
    completions: int = 0
    failures: int = 0
    bytes: int = 0
    rpo: Histogram = field(default_factory=Histogram)
    latency: Histogram = field(default_factory=Histogram)


class ReplicationMetrics:
    """Per-site counters fed with every ledger record the API reads; observe() and render() may run on any thread."""

    def __init__(self, clock=time.time):
        self.lock = threading.Lock()
        self.clock = clock
        self.sites: dict[str, SiteCounters] = {}
        self.outcomes = OutcomeRate()
        self.unroutable: dict[tuple[str, str], int] = {}  # (bucket, rule) -> FAILED records of its versions
        self.queued: dict[tuple[str, str], int] = {}  # (bucket, site) -> PENDING marks (versions queued)

    def reset(self) -> None:
        """Forget everything (the follower re-reads the ledger from its start)."""
        with self.lock:
            self.sites = {}
            self.unroutable = {}
            self.queued = {}
            self.outcomes = OutcomeRate()

    def observe(self, status: StatusEntry) -> None:
        """Count one ledger record: a COMPLETED or FAILED write is one outcome; a PENDING mark is one version queued
        (by the populator's scan or notifications, or a retry)."""
        if status.status == PENDING:
            with self.lock:
                labels = (status.entry.bucket, status.site)
                self.queued[labels] = self.queued.get(labels, 0) + 1
            return
        if status.status not in (COMPLETED, FAILED):
            return
        with self.lock:
            self.outcomes.add(status.site, status.updated_at, self.clock())
            counters = self.sites.setdefault(status.site, SiteCounters())
            if status.status == FAILED:
                counters.failures += 1
                rule = unroutable_rule(status.reason)
                if rule is not None:
                    labels = (status.entry.bucket, rule)
                    self.unroutable[labels] = self.unroutable.get(labels, 0) + 1
                return
            counters.completions += 1
            if not status.entry.is_delete_marker:
                counters.bytes += status.entry.size
            rpo = rpo_s(status)
            if rpo is not None:
                counters.rpo.observe(rpo)
            if status.entry.enqueued_at:
                counters.latency.observe(max(0.0, (status.updated_at - status.entry.enqueued_at) / 1000.0))

    def outcome_rates(self) -> dict[str, float]:
        """Per site, versions that left PENDING per second over the last DRAIN_WINDOW_S (OutcomeRate)."""
        with self.lock:
            return self.outcomes.rates(self.clock())

    def render(self) -> list[str]:
        with self.lock:
            sites = sorted(self.sites.items())
            lines = _family("crr_completions_total", "counter", "versions replicated (COMPLETED ledger records)")
            lines += ['crr_completions_total{site="%s"} %d' % (_label(s), c.completions) for s, c in sites]
            lines += _family("crr_failures_total", "counter", "versions that ended FAILED (ledger records)")
            lines += ['crr_failures_total{site="%s"} %d' % (_label(s), c.failures) for s, c in sites]
            lines += _family("crr_replicated_bytes_total", "counter", "bytes of the versions replicated")
            lines += ['crr_replicated_bytes_total{site="%s"} %d' % (_label(s), c.bytes) for s, c in sites]
            lines += _family("crr_rpo_seconds", "histogram",
                             "completion time minus source last-modified (1 s resolution of S3 Last-Modified)")
            for site, counters in sites:
                lines += counters.rpo.render("crr_rpo_seconds", 'site="%s"' % _label(site))
            lines += _family("crr_latency_seconds", "histogram", "completion time minus time queued by the populator")
            for site, counters in sites:
                lines += counters.latency.render("crr_latency_seconds", 'site="%s"' % _label(site))
            lines += _family("crr_unroutable_versions_total", "counter",
                             "versions FAILED because their rule names no site a processor serves (ledger records)")
            lines += ['crr_unroutable_versions_total{bucket="%s",rule="%s"} %d' % (_label(b), _label(r), n)
                      for (b, r), n in sorted(self.unroutable.items())]
            lines += _family("crr_queued_versions_total", "counter",
                             "versions queued for a site (PENDING ledger records: scan, notifications, retries)")
            lines += ['crr_queued_versions_total{bucket="%s",site="%s"} %d' % (_label(b), _label(s), n)
                      for (b, s), n in sorted(self.queued.items())]
        return lines


def rpo_s(status: StatusEntry) -> float | None:
    """Seconds from the version's source Last-Modified to its completion; None when the entry has no date."""
    if not status.entry.last_modified:
        return None
    try:
        modified = datetime.fromisoformat(status.entry.last_modified.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, status.updated_at / 1000.0 - modified.timestamp())


@dataclass(frozen=True)
class PartitionLag:
    """One partition of the replication topic as seen by one site's consumer group."""

    site: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def read_lag(admin, config: WorkerConfig) -> list[PartitionLag]:
    """Committed vs end offset of every partition, per site group; a group that never committed counts from the
    partition's first offset. `admin` is a KafkaAdminClient; KafkaError propagates."""
    topic = config.topic
    described = admin.describe_topics([topic])[0]
    partitions = [TopicPartition(topic, p["partition_index"]) for p in described.get("partitions", [])]
    if not partitions:
        return []
    ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
    starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
    found = []
    for site in config.sites:
        group = config.queue_processor.group_id(site.site)
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
        for tp in sorted(partitions, key=lambda p: p.partition):
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else starts[tp].offset
            found.append(PartitionLag(site.site, tp.partition, offset, ends[tp].offset))
    return found


def render_lag(lags: list[PartitionLag], available: bool) -> list[str]:
    lines = _family("crr_lag_available", "gauge", "1 when the lag below could be read from Kafka")
    lines.append("crr_lag_available %d" % int(available))
    lines += _family("crr_backlog_messages", "gauge", "entries not yet committed by the site's consumer group")
    lines += ['crr_backlog_messages{site="%s",partition="%d"} %d' % (_label(lag.site), lag.partition, lag.lag)
              for lag in lags]
    lines += _family("crr_committed_offset", "gauge", "offset committed by the site's consumer group")
    lines += ['crr_committed_offset{site="%s",partition="%d"} %d' % (_label(lag.site), lag.partition, lag.committed)
              for lag in lags]
    lines += _family("crr_end_offset", "gauge", "end offset of the replication topic partition")
    lines += ['crr_end_offset{site="%s",partition="%d"} %d' % (_label(lag.site), lag.partition, lag.end)
              for lag in lags]
    return lines


def render_states(statuses: Iterable[StatusEntry], paused: dict[str, bool], sites: list[str], ready: bool
                  ) -> list[str]:
    """Gauges of the current ledger (versions per site and status, replays waiting) and of the sites' pause
    state; `statuses` is read once (the API's store gives an iterator)."""
    counts: dict[tuple[str, str], int] = {}
    waiting: dict[str, int] = dict.fromkeys(sites, 0)
    for status in statuses:
        counts[(status.site, status.status)] = counts.get((status.site, status.status), 0) + 1
        if status.status == FAILED and status.replay_at:
            waiting[status.site] = waiting.get(status.site, 0) + 1
    lines = _family("crr_versions", "gauge", "versions in the ledger by site and current status")
    lines += ['crr_versions{site="%s",status="%s"} %d' % (_label(site), state, count)
              for (site, state), count in sorted(counts.items())]
    lines += _family("crr_replays_waiting", "gauge", "FAILED versions waiting for their automatic replay")
    lines += ['crr_replays_waiting{site="%s"} %d' % (_label(site), count) for site, count in sorted(waiting.items())]
    lines += _family("crr_site_paused", "gauge", "1 while the site's processors are paused")
    lines += ['crr_site_paused{site="%s"} %d' % (_label(site), int(paused.get(site, False))) for site in sites]
    lines += _family("crr_ledger_loaded", "gauge", "1 once the API has read the ledger to its end")
    lines.append("crr_ledger_loaded %d" % int(ready))
    return lines


def render_pending_age(statuses: list[StatusEntry], sites: list[str], now_s: float) -> list[str]:
    """Per site, seconds since its oldest PENDING version was queued (0 when none is pending), against `now_s`."""
    oldest_ms: dict[str, int] = {}
    for status in statuses:
        if status.status == PENDING:
            queued_ms = status.entry.enqueued_at or status.updated_at
            oldest_ms[status.site] = min(queued_ms, oldest_ms.get(status.site, queued_ms))
    lines = _family("crr_oldest_pending_age_seconds", "gauge",
                    "seconds since the site's oldest PENDING version was queued, 0 when none is pending")
    for site in sorted(set(sites) | set(oldest_ms)):
        age = max(0.0, now_s - oldest_ms[site] / 1000.0) if site in oldest_ms else 0.0
        lines.append('crr_oldest_pending_age_seconds{site="%s"} %.3f' % (_label(site), age))
    return lines


def pending_eta_s(pending: int, rate: float) -> float | None:
    """Seconds until `pending` versions are done at `rate` per second: 0 with none pending, whatever the rate; None
    (no sample) while none is done (rate 0): nothing then says when they will be, and an infinite or guessed figure
    would read as an estimate. `crr_oldest_pending_age_seconds` shows that wait growing."""
    if pending <= 0:
        return 0.0
    if rate <= 0:
        return None
    return pending / rate


def render_pending_eta(pending: dict[str, int], rates: dict[str, float], paused: dict[str, bool], sites: list[str],
                       ready: bool) -> list[str]:
    """Per site, pending_eta_s of its PENDING versions at its outcome rate of the last DRAIN_WINDOW_S; a paused
    site drains nothing (its rate is taken as 0), and no site has a sample before the ledger is loaded (its
    PENDING count is partial until then)."""
    lines = _family("crr_pending_eta_seconds", "gauge",
                    "seconds until the site's PENDING versions are done at its rate of COMPLETED and FAILED records "
                    "of the last 5 min; 0 when none is pending, no sample while none is done or the site is paused")
    if not ready:
        return lines
    for site in sorted(set(sites) | set(pending)):
        eta = pending_eta_s(pending.get(site, 0), 0.0 if paused.get(site) else rates.get(site, 0.0))
        if eta is not None:
            lines.append('crr_pending_eta_seconds{site="%s"} %.3f' % (_label(site), eta))
    return lines


def render_scans(reports: list[ScanReport], now_ms: int) -> list[str]:
    """Per bucket and kind (the populator's scan, a `crr-worker resync`), its current (or last) listing: running or
    not, versions listed and entries queued, and when it started and last reported (epoch seconds); a rate is
    deriv(crr_scan_listed_versions[5m]). One family per figure with a `kind` label, not a family per kind: both
    are the same listing, reported by the same ScanReport, and one query or panel then shows both."""
    families = (
        ("crr_scan_running", "1 while the bucket's scan (the active populator's) or resync runs and reported in the "
         "last 60 s", lambda r: "%d" % r.running_at(now_ms)),
        ("crr_scan_listed_versions", "versions the bucket's current or last scan or resync listed",
         lambda r: "%d" % r.listed),
        ("crr_scan_queued_versions", "entries the bucket's current or last scan or resync queued",
         lambda r: "%d" % r.queued),
        ("crr_scan_started_timestamp_seconds", "when the bucket's current or last scan or resync started",
         lambda r: "%.3f" % (r.started_at / 1000.0)),
        ("crr_scan_updated_timestamp_seconds", "when the bucket's current or last scan or resync last reported",
         lambda r: "%.3f" % (r.updated_at / 1000.0)),
    )
    lines = []
    for name, helptext, value in families:
        lines += _family(name, "gauge", helptext)
        lines += ['%s{bucket="%s",kind="%s"} %s' % (name, _label(report.bucket), report.kind, value(report))
                  for report in reports]
    return lines


def _family(name: str, kind: str, helptext: str) -> list[str]:
    return ["# HELP %s %s" % (name, helptext), "# TYPE %s %s" % (name, kind)]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
