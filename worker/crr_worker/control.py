"""Pause and resume per site: a compacted Kafka control topic that every processor of the site watches.

Processors of one site may run on several hosts, so a pause cannot be a signal to a local process: the API
writes the site's state (key = site name) to `<topic>-control`, a one-partition compacted topic, and every
processor reads it from the start at launch and follows it afterwards. Compaction keeps one record per site,
so a processor started while its site is paused starts paused. The populator's scan and `crr-worker resync`
write their listings' progress there too (crr_worker.scan_report), for the API; processors skip those records.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from kafka import KafkaProducer, TopicPartition

from crr_worker.config import WorkerConfig
from crr_worker.entries import now_ms
from crr_worker.kafka_io import control_topic, make_consumer, send_all
from crr_worker.logs import log
from crr_worker.scan_report import ScanReport, is_scan_report

LOG = logging.getLogger("crr_worker.control")


@dataclass(frozen=True)
class SiteControl:
    """The operator's wish for one site: paused or not, and when it was said."""

    site: str
    paused: bool
    updated_at: int

    def to_kafka(self) -> tuple[bytes, bytes]:
        value = {"site": self.site, "paused": self.paused, "updatedAt": self.updated_at}
        return self.site.encode("utf-8"), json.dumps(value).encode("utf-8")

    @classmethod
    def from_kafka(cls, value: bytes) -> SiteControl | None:
        """The state in a control record; None for a record that is not one (it is then ignored)."""
        try:
            data = json.loads(value)
            return cls(site=str(data["site"]), paused=bool(data["paused"]), updated_at=int(data.get("updatedAt", 0)))
        except (TypeError, ValueError, KeyError) as exc:
            log(LOG, logging.WARNING, "ignoring a control record", error=str(exc))
            return None


def set_paused(config: WorkerConfig, producer: KafkaProducer, site: str, paused: bool) -> SiteControl:
    """Record the state of `site` (a configured one); returns once Kafka acknowledged it (processors follow
    within a second). The control topic must exist (kafka_io.ensure_topics): the broker would auto-create it
    uncompacted.
    """
    state = SiteControl(site, paused, now_ms())
    send_all(producer, control_topic(config), [state.to_kafka()])
    return state


class ControlWatch:
    """The latest state of every site, and the last report of every bucket's scan and resync, read from the control
    topic; used by one thread only (not thread-safe)."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.sites: dict[str, SiteControl] = {}
        self.scans: dict[tuple[str, str], ScanReport] = {}  # (kind, bucket) -> its last report
        self.consumer = None

    def load(self, stop: threading.Event, timeout_s: float = 60.0) -> None:
        """Read the topic to its current end, so that a paused site is known before any work is fetched.

        The topic must exist: the component ensures it at start (kafka_io.ensure_topics), else the broker would
        auto-create it uncompacted.
        """
        self.consumer = make_consumer(self.config, None)
        partition = TopicPartition(control_topic(self.config), 0)
        self.consumer.assign([partition])
        self.consumer.seek_to_beginning(partition)
        end = self.consumer.end_offsets([partition])[partition]
        deadline = time.monotonic() + timeout_s
        while self.consumer.position(partition) < end:
            if stop.is_set() or time.monotonic() > deadline:
                raise RuntimeError("control topic %s not read to its end" % control_topic(self.config))
            self.refresh(timeout_ms=200)

    def refresh(self, timeout_ms: int = 0) -> None:
        """Apply records written since the last call; `paused()` then answers with them."""
        for messages in self.consumer.poll(timeout_ms=timeout_ms).values():
            for message in messages:
                if message.value is None:
                    continue
                if is_scan_report(message.key):
                    report = ScanReport.from_kafka(message.value)
                    if report is not None:
                        self.scans[(report.kind, report.bucket)] = report
                    continue
                state = SiteControl.from_kafka(message.value)
                if state is not None:
                    self.sites[state.site] = state

    def paused(self, site: str) -> bool:
        state = self.sites.get(site)
        return bool(state and state.paused)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
