"""What both kinds of `crr-worker resync` share: their counts, their progress display and reports, their errors, the
listing."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from botocore.exceptions import ClientError

from crr_worker.config import WorkerConfig
from crr_worker.entries import now_ms
from crr_worker.kafka_io import make_producer
from crr_worker.logs import log
from crr_worker.retry import describe
from crr_worker.scan_report import RESYNC, ScanReport, send_report
from crr_worker.sources.base import VersionInfo

LOG = logging.getLogger("crr_worker.resync")
REDRAW_EVERY_S = 0.5  # a terminal's progress line
LOG_EVERY_S = 10.0  # the log's progress line (a journal would keep every redraw)


class ResyncError(Exception):
    """The resync cannot go on: the message says what failed."""


class ResyncRefused(ResyncError):
    """The resync was asked for something it cannot do (a usage error, not a failure)."""


@dataclass
class Counts:
    listed: int = 0
    queued: int = 0
    gone: int = 0  # deleted between the listing and the metadata read


def listing(source, bucket: str) -> Iterator[VersionInfo]:
    """The bucket's versions, each key's oldest first; ResyncError when the bucket cannot be listed."""
    try:
        yield from source.list_versions(bucket)
    except ClientError as exc:
        raise ResyncError("cannot list the versions of bucket %s: %s" % (bucket, describe(exc))) from exc


class Progress:
    """`listed N, queued M, X versions/s`, redrawn in place on a terminal at most every 0.5 s, and logged every 10 s
    wherever stderr goes; between start() and end(), also handed to `report` (resync() sets it: the API's metrics)
    at the start, with each log line and at the end. No ETA: a version listing streams and tells no total before
    its end; when what it queued will be replicated is the API's crr_pending_eta_seconds."""

    def __init__(self, stream: TextIO | None = None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.clock = clock
        self.started = self.shown = self.logged = clock()
        self.width = 0
        self.report: Callable[[Counts, bool], None] = lambda counts, running: None
        self.reporting = False

    def start(self, counts: Counts) -> None:
        """The listing begins, its topics ensured (the control topic the reports go to among them): reported now."""
        self.reporting = True
        self.report(counts, True)

    def end(self, counts: Counts) -> None:
        """The last report, running no more; also after an error (else the resync would read running for a
        minute), and none when the resync failed before start()."""
        if self.reporting:
            self.reporting = False
            self.report(counts, False)

    def update(self, counts: Counts) -> None:
        now = self.clock()
        if now - self.logged >= LOG_EVERY_S:
            self.logged = now
            self._log(counts, now)
            self.shown = now - REDRAW_EVERY_S  # the wiped line comes back at once
        if self.tty and now - self.shown >= REDRAW_EVERY_S:
            self.shown = now
            self._draw(counts, now)

    def done(self, counts: Counts) -> None:
        """The last state; on a terminal the line is ended so that the summary starts on its own."""
        if self.tty:
            self._draw(counts, self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _rate(self, counts: Counts, now: float) -> float:
        return counts.listed / max(now - self.started, 1e-6)

    def _log(self, counts: Counts, now: float) -> None:
        """The log line; on a terminal the progress line is wiped first, so that the JSON line starts clean."""
        if self.tty and self.width:
            self.stream.write("\r%s\r" % (" " * self.width))
            self.stream.flush()
            self.width = 0
        log(LOG, logging.INFO, "resync progress", listed=counts.listed, queued=counts.queued,
            versions_per_s=round(self._rate(counts, now), 1))
        if self.reporting:
            self.report(counts, True)

    def _draw(self, counts: Counts, now: float) -> None:
        line = "listed %d, queued %d, %.0f versions/s" % (counts.listed, counts.queued, self._rate(counts, now))
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)


class ControlReports:
    """A resync's progress as reports of kind resync on the control topic (crr_worker.scan_report), which the API
    exports as the scan's. Through a producer of its own, made at the first report (Progress.start, once the topics
    exist): the resync's publishing producers are closed before its last report."""

    def __init__(self, config: WorkerConfig, bucket: str):
        self.config, self.bucket = config, bucket
        self.started_at = now_ms()
        self.producer = None

    def send(self, counts: Counts, running: bool) -> None:
        if self.producer is None:
            self.producer = make_producer(self.config)
        report = ScanReport(self.bucket, counts.listed, counts.queued, running, self.started_at, now_ms(), RESYNC)
        send_report(self.config, self.producer, report)

    def close(self) -> None:
        """Flush the reports sent (the last one included), then release the producer."""
        if self.producer is not None:
            self.producer.close(timeout=10)
            self.producer = None
