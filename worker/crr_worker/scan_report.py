"""The progress of a bucket's listing, for `/metrics`: the populator's scan and `crr-worker resync` serve no HTTP,
and may run on another host than the API, so each writes how far its listing of a bucket got to the control topic
(key `<kind>/<bucket>`: `scan/<bucket>`, `resync/<bucket>`), which the API follows anyway (crr_worker.control).
Compaction keeps the last report of each kind and bucket: the listing under way, or the last one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from kafka.errors import KafkaError

from crr_worker.config import WorkerConfig
from crr_worker.kafka_io import control_topic
from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.scan_report")
SCAN, RESYNC = "scan", "resync"  # the populator's scan; a `crr-worker resync`
KINDS = (SCAN, RESYNC)
KEY_PREFIXES = tuple(b"%s/" % kind.encode("ascii") for kind in KINDS)
STALE_AFTER_MS = 60_000  # a running listing reports at least every 10 s: silent this long, its process is gone


@dataclass(frozen=True)
class ScanReport:
    """How far the listing of one bucket got (a scan, or a resync: `kind`), as its process last said."""

    bucket: str
    listed: int
    queued: int
    running: bool
    started_at: int  # epoch ms
    updated_at: int
    kind: str = SCAN

    def to_kafka(self) -> tuple[bytes, bytes]:
        value = {"kind": self.kind, "bucket": self.bucket, "listed": self.listed, "queued": self.queued,
                 "running": self.running, "startedAt": self.started_at, "updatedAt": self.updated_at}
        return ("%s/%s" % (self.kind, self.bucket)).encode("utf-8"), json.dumps(value).encode("utf-8")

    @classmethod
    def from_kafka(cls, value: bytes) -> ScanReport | None:
        """The report in a control record; None for a record that is not one (it is then ignored)."""
        try:
            data = json.loads(value)
            kind = str(data.get("kind", SCAN))
            if kind not in KINDS:
                raise ValueError("unknown kind %r" % kind)
            return cls(bucket=str(data["bucket"]), listed=int(data["listed"]), queued=int(data["queued"]),
                       running=bool(data["running"]), started_at=int(data["startedAt"]),
                       updated_at=int(data["updatedAt"]), kind=kind)
        except (TypeError, ValueError, KeyError) as exc:
            log(LOG, logging.WARNING, "ignoring a scan report", error=str(exc))
            return None

    def running_at(self, now_ms: int) -> bool:
        """Running, and said so recently enough for its process to be alive."""
        return self.running and now_ms - self.updated_at < STALE_AFTER_MS


def is_scan_report(key: bytes | None) -> bool:
    """Whether a control record is a listing's report (not a site's pause state): its key starts with a kind."""
    return bool(key) and key.startswith(KEY_PREFIXES)


def send_report(config: WorkerConfig, producer, report: ScanReport) -> None:
    """Write `report` to the control topic (which must exist: kafka_io.ensure_topics); not waited for (the
    producer's next flush carries it), and a report lost to a Kafka error only delays the metric."""
    key, value = report.to_kafka()
    try:
        producer.send(control_topic(config), key=key, value=value)
    except KafkaError as exc:
        log(LOG, logging.WARNING, "%s progress not reported" % report.kind, bucket=report.bucket, error=str(exc))
