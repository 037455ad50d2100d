"""The status processor: outcomes and PENDING marks from the status topic, resolved into the ledger.

Offsets of the status topic are committed only after the ledger writes are acknowledged, so an outcome is
never lost; replaying one is harmless because `Standing.outranks` decides which record wins.
Also here: re-queueing FAILED versions (`crr-worker retry`), shared by the CLI and the API.
"""

from __future__ import annotations

import logging
import threading

from kafka import ConsumerRebalanceListener, KafkaProducer

from crr_worker.config import WorkerConfig
from crr_worker.entries import PENDING, EntryError, Standing, StatusEntry, key_digest
from crr_worker.kafka_io import ensure_topics, make_consumer, make_producer, send_all, wait_for_partitions
from crr_worker.ledger import read_standings
from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.status")


class StatusProcessor:
    """Keeps what decides which status wins (the ledger's standings) and writes each status that outranks it."""

    def __init__(self, config: WorkerConfig, stop: threading.Event):
        self.config = config
        self.stop = stop
        self.standings: dict[bytes, Standing] = {}
        self.written = 0

    def run(self) -> None:
        ensure_topics(self.config)
        producer = make_producer(self.config)
        consumer = make_consumer(self.config, self.config.status_group_id, max_poll_records=500)
        wait_for_partitions(consumer, self.config.status_topic, self.stop)
        consumer.subscribe([self.config.status_topic], listener=_Reload(self))
        log(LOG, logging.INFO, "status processor started", group=self.config.status_group_id)
        try:
            while not self.stop.is_set():
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    continue
                writes = [w for messages in batch.values() for m in messages for w in self._resolve(m.value)]
                send_all(producer, self.config.ledger_topic, writes)
                consumer.commit()
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=5)
            log(LOG, logging.INFO, "status processor stopped", written=self.written)

    def reload(self) -> None:
        """Re-read the ledger: after a rebalance, other members may have written what we now own."""
        self.standings = read_standings(self.config, self.stop)

    def _resolve(self, value: bytes) -> list[tuple[bytes, bytes]]:
        """The ledger write for one status message: none when the ledger already holds something newer."""
        try:
            status = StatusEntry.from_kafka(value)
        except EntryError as exc:
            log(LOG, logging.WARNING, "ignoring a status message", error=str(exc))
            return []
        key, standing = status.ledger_key, status.standing
        digest = key_digest(key)
        if not standing.outranks(self.standings.get(digest)):
            return []
        self.standings[digest] = standing
        self.written += 1
        return [(key, status.to_kafka()[1])]


class _Reload(ConsumerRebalanceListener):
    def __init__(self, processor: StatusProcessor):
        self.processor = processor

    def on_partitions_revoked(self, revoked):
        pass  # everything polled was written and committed in the loop

    def on_partitions_assigned(self, assigned):
        self.processor.reload()


def requeue(config: WorkerConfig, producer: KafkaProducer, statuses: list[StatusEntry]) -> int:
    """Publish FAILED versions again for their site, as a new generation, and mark them PENDING.

    The caller's producer, and topics the caller ensured: the API keeps both for its lifetime.
    """
    if not statuses:
        return 0
    fresh = [StatusEntry(s.entry.for_sites((s.site,)), s.site, PENDING) for s in statuses]
    send_all(producer, config.topic, [s.entry.to_kafka() for s in fresh])
    send_all(producer, config.status_topic, [s.to_kafka() for s in fresh])
    return len(fresh)
