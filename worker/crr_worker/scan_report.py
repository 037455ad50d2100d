"""The populator's scan progress, for `/metrics`: the populator serves no HTTP, and may run on another host than
the API, so it writes the progress of each bucket's scan to the control topic (key `scan/<bucket>`), which the
API follows anyway (crr_worker.control). Compaction keeps the last report of each bucket: the scan under way,
or the last one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.scan_report")
KEY_PREFIX = b"scan/"
STALE_AFTER_MS = 60_000  # a running scan reports at least every 10 s: silent this long, its populator is gone


@dataclass(frozen=True)
class ScanReport:
    """How far the scan of one bucket got, as its populator last said."""

    bucket: str
    listed: int
    queued: int
    running: bool
    started_at: int  # epoch ms
    updated_at: int

    def to_kafka(self) -> tuple[bytes, bytes]:
        value = {"kind": "scan", "bucket": self.bucket, "listed": self.listed, "queued": self.queued,
                 "running": self.running, "startedAt": self.started_at, "updatedAt": self.updated_at}
        return KEY_PREFIX + self.bucket.encode("utf-8"), json.dumps(value).encode("utf-8")

    @classmethod
    def from_kafka(cls, value: bytes) -> ScanReport | None:
        """The report in a control record; None for a record that is not one (it is then ignored)."""
        try:
            data = json.loads(value)
            return cls(bucket=str(data["bucket"]), listed=int(data["listed"]), queued=int(data["queued"]),
                       running=bool(data["running"]), started_at=int(data["startedAt"]),
                       updated_at=int(data["updatedAt"]))
        except (TypeError, ValueError, KeyError) as exc:
            log(LOG, logging.WARNING, "ignoring a scan report", error=str(exc))
            return None

    def running_at(self, now_ms: int) -> bool:
        """Running, and said so recently enough for its populator to be alive."""
        return self.running and now_ms - self.updated_at < STALE_AFTER_MS


def is_scan_report(key: bytes | None) -> bool:
    return bool(key) and key.startswith(KEY_PREFIX)
