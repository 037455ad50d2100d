"""The status processor: outcomes and PENDING marks from the status topic, resolved into the ledger.

Offsets of the status topic are committed only after the ledger writes are acknowledged, so an outcome is
never lost; replaying one is harmless because `Standing.outranks` decides which record wins.
Also here: re-queueing FAILED versions (`crr-worker retry`), shared by the CLI and the API.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from kafka import KafkaProducer

from crr_worker.config import WorkerConfig
from crr_worker.entries import PENDING, EntryError, StatusEntry, key_digest
from crr_worker.kafka_io import (
    TimedRebalances,
    ensure_topics,
    make_consumer,
    make_producer,
    rejoin_when_stuck,
    send_all,
    subscribed,
)
from crr_worker.ledger import read_standings
from crr_worker.logs import log
from crr_worker.replay import Replays, collect_waiting
from crr_worker.retry import describe, is_retryable
from crr_worker.store import standings_store

LOG = logging.getLogger("crr_worker.status")
SINK_MAX_BACKOFF_S = 30.0
STUCK_REBALANCE_S = 90.0  # a rebalance of ours lasting this long will not end (kafka_io.TimedRebalances)


class StatusSink(Protocol):
    def write(self, status: StatusEntry) -> bool:
        """Hand one outcome to the source (CloudServer: into the version's metadata); raises on error."""

    def close(self) -> None:
        """Release connections."""


class StatusProcessor:
    """Keeps what decides which status wins (the ledger's standings) and writes each status that outranks it,
    then hands each outcome to the source's status sink when it has one."""

    def __init__(self, config: WorkerConfig, stop: threading.Event, sink: StatusSink | None = None):
        self.config = config
        self.stop = stop
        self.sink = sink
        self.standings = standings_store(config.state_dir)  # on disk (store.py), rebuilt from the ledger
        self.replays = Replays()
        self.consumer = None
        self.rebalances: _Reload | None = None
        self.written = 0

    def run(self) -> None:
        ensure_topics(self.config)
        producer = make_producer(self.config)
        self.consumer, self.rebalances = self._join()
        log(LOG, logging.INFO, "status processor started", group=self.config.status_group_id)
        try:
            while not self.stop.is_set():
                self._replay_due(producer)
                self._rejoin_if_stuck()
                consumer = self.consumer
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    continue
                resolved = [s for messages in batch.values() for m in messages if (s := self._resolve(m.value))]
                send_all(producer, self.config.ledger_topic, [(s.ledger_key, s.to_kafka()[1]) for s in resolved])
                for status in resolved:
                    self.replays.note(status)
                if self.sink is not None and not self._hand_to_sink([s for s in resolved if s.status != PENDING]):
                    break  # stopping: not committed, so handed again after the restart
                consumer.commit()
        finally:
            self.consumer.close(autocommit=False)
            producer.close(timeout=5)
            if self.sink is not None:
                self.sink.close()
            log(LOG, logging.INFO, "status processor stopped", written=self.written)

    def _join(self):
        """A new member of the status group, subscribed (it joins at its first poll), and its rebalance listener."""
        consumer = make_consumer(self.config, self.config.status_group_id, max_poll_records=500)
        rebalances = _Reload(self)
        return subscribed(consumer, self.config.status_topic, rebalances, self.stop), rebalances

    def _rejoin_if_stuck(self) -> None:
        """Leave and join again as a new member when this one's rebalance (its first join too) has lasted far
        longer than one takes (kafka_io.TimedRebalances): what it polled and did not commit comes again, which
        the ledger's standings make harmless."""
        fresh = rejoin_when_stuck(self.rebalances, STUCK_REBALANCE_S, self._join, LOG, "status group",
                                  group=self.config.status_group_id)
        if fresh is None:
            return
        stuck, (self.consumer, self.rebalances) = self.consumer, fresh
        stuck.close(autocommit=False, timeout_ms=1000)

    def reload(self, assigned=()) -> None:
        """Re-read the ledger: after a rebalance, other members may have written what we now own; and the replays
        waiting in the status partitions now ours."""
        found: dict = {}
        replaying = self.config.replay.retries and self.consumer is not None
        also = (lambda records: collect_waiting(found, records)) if replaying else None
        previous, self.standings = self.standings, read_standings(self.config, self.stop, also=also)  # one pass
        previous.close()
        if replaying:
            partitions = len(self.consumer.partitions_for_topic(self.config.status_topic) or ()) or 1
            owned = {tp.partition for tp in assigned if tp.topic == self.config.status_topic}
            self.replays.keep(found, owned, partitions)

    def _replay_due(self, producer: KafkaProducer) -> None:
        """Re-queue the FAILED versions whose replay is due (crr_worker.replay)."""
        due = self.replays.due(self.standings)
        if not due:
            return
        requeue(self.config, producer, due)
        for status in due:
            log(LOG, logging.INFO, "replaying a FAILED version", site=status.site, bucket=status.entry.bucket,
                key=status.entry.key, version_id=status.entry.version_id, replay=status.entry.replay_count + 1,
                reason=status.reason)

    def _resolve(self, value: bytes) -> StatusEntry | None:
        """The status to write to the ledger from one status message: None when the ledger holds a newer one."""
        try:
            status = StatusEntry.from_kafka(value)
        except EntryError as exc:
            log(LOG, logging.WARNING, "ignoring a status message", error=str(exc))
            return None
        digest = key_digest(status.ledger_key)
        if not status.standing.outranks(self.standings.get(digest)):
            return None
        self.standings[digest] = status.standing
        self.written += 1
        return status

    def _hand_to_sink(self, outcomes: list[StatusEntry]) -> bool:
        """Each outcome to the sink, retried while the error may pass; the batch is committed only after, so a
        crash hands them again (the sink's writes are idempotent). An error that cannot pass is logged.
        False when stopped before every outcome was handed."""
        for status in outcomes:
            attempt = 0
            while not self.stop.is_set():
                try:
                    self.sink.write(status)
                    break
                except Exception as exc:  # noqa: BLE001 - classified right below
                    if not is_retryable(exc):
                        log(LOG, logging.ERROR, "cannot write the status back to the source", site=status.site,
                            bucket=status.entry.bucket, key=status.entry.key,
                            version_id=status.entry.version_id, status=status.status, error=describe(exc))
                        break
                    delay = min(SINK_MAX_BACKOFF_S, 0.5 * 2 ** attempt)
                    attempt += 1
                    log(LOG, logging.WARNING, "status write-back failed; retrying", error=describe(exc),
                        delay_s=delay)
                    self.stop.wait(delay)
        return not self.stop.is_set()


class _Reload(TimedRebalances):
    """Everything polled was written and committed in the loop: a revocation has nothing to finish; an
    assignment re-reads the ledger (StatusProcessor.reload)."""

    def __init__(self, processor: StatusProcessor):
        super().__init__()
        self.processor = processor

    def on_partitions_assigned(self, assigned):
        self.processor.reload(assigned)
        super().on_partitions_assigned(assigned)
        log(LOG, logging.INFO, "partitions assigned", group=self.processor.config.status_group_id,
            partitions=sorted(tp.partition for tp in assigned))


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
