"""The status ledger: a compacted Kafka topic holding the latest status of every (site, version).

Any host can rebuild the whole ledger by reading the topic from its start; compaction keeps it to one record
per key. Only the status processor writes it; everyone else reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from crr_worker.config import WorkerConfig
from crr_worker.entries import FAILED, EntryError, StatusEntry, key_digest, ledger_key
from crr_worker.kafka_io import make_consumer
from crr_worker.logs import log
from crr_worker.store import DigestStore, StatusStore, digest_set, standings_store

LOG = logging.getLogger("crr_worker.ledger")


class LedgerUnavailable(Exception):
    """The ledger topic could not be read to its end in time."""


class KafkaUnreachable(LedgerUnavailable):
    """No broker of `kafka.hosts` answered within the read-only commands' bounded timeout."""


def read_ledger(config: WorkerConfig, stop: threading.Event | None = None, timeout_s: float = 120.0
                ) -> dict[bytes, StatusEntry]:
    """Every status in the ledger, by ledger key, as of the moment the read started.

    Creates no topic (components create theirs at start): a missing ledger topic is waited for up to `timeout_s`.
    """
    return _read_whole(config, apply_records, stop, timeout_s)


def read_existing_ledger(config: WorkerConfig, connect_timeout_s: float = 10.0, timeout_s: float = 120.0
                         ) -> dict[bytes, StatusEntry]:
    """read_ledger for read-only commands: an absent ledger topic is an empty ledger (no component ran yet), found
    by one metadata request instead of a wait, and nothing is created.

    KafkaUnreachable when no broker answers within `connect_timeout_s` (kafka-python's own waits are 30 s).
    """
    timeout_ms = int(connect_timeout_s * 1000)
    try:
        probe = make_consumer(config, None, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise KafkaUnreachable("no answer within %g s" % connect_timeout_s) from exc
    try:
        present = config.ledger_topic in probe.topics()
    except KafkaTimeoutError as exc:
        raise KafkaUnreachable("no topic list within %g s" % connect_timeout_s) from exc
    finally:
        probe.close(autocommit=False)
    return _read_whole(config, apply_records, None, timeout_s) if present else {}


def read_standings(config: WorkerConfig, stop: threading.Event | None = None, timeout_s: float = 120.0,
                   also=None) -> DigestStore:
    """The standing of every status in the ledger, by key digest (apply_standings), as read_ledger reads it: in a
    new on-disk store under stateDir, rebuilt at each read (store.py). `also(records)`, when given, sees every
    poll's records too: another view built in the same pass."""
    standings = standings_store(config.state_dir)

    def apply(state, records):
        apply_standings(state, records)
        if also is not None:
            also(records)

    try:
        return _read_whole(config, apply, stop, timeout_s, standings)
    except BaseException:
        standings.close()
        raise


def _read_whole(config: WorkerConfig, apply, stop: threading.Event | None, timeout_s: float, state=None):
    """apply(state, records) over the ledger to its end, one poll at a time: the records are never all in memory.
    `state` is a new dict unless given (a store)."""
    reader = LedgerReader(config, stop, timeout_s)
    try:
        state = {} if state is None else state
        for records in reader.batches_to_end(stop, timeout_s):
            apply(state, records)
        return state
    finally:
        reader.close()


class LedgerReader:
    """The ledger topic read from its start, knowing where it ended when the reader opened.

    read_ledger reads it to that end; the API reads it to that end and then keeps following it; the populator
    reads what is new at each scan (batches_to_end).
    """

    def __init__(self, config: WorkerConfig, stop: threading.Event | None = None, timeout_s: float = 120.0):
        self.topic = config.ledger_topic
        self.consumer = make_consumer(config, None)
        try:
            self.partitions = _partitions(self.consumer, config.ledger_topic, stop, timeout_s)
            self.consumer.assign(self.partitions)
            self.consumer.seek_to_beginning(*self.partitions)
            self.ends = self.consumer.end_offsets(self.partitions)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout_ms: int = 500) -> list[tuple[bytes, bytes | None]]:
        """The (key, value) records that arrive within `timeout_ms`, in partition order; value None = tombstone."""
        return [(m.key, m.value) for messages in self.consumer.poll(timeout_ms=timeout_ms).values() for m in messages]

    def caught_up(self) -> bool:
        """True once every partition is read up to the end it had when the reader opened."""
        return all(self.consumer.position(p) >= self.ends[p] for p in self.partitions)

    def batches_to_end(self, stop: threading.Event | None = None, timeout_s: float = 120.0
                       ) -> Iterator[list[tuple[bytes, bytes | None]]]:
        """Every record from where the reader is to the topic's current end (all of it on the first call), one
        poll at a time: readers keep less than the records, never the whole ledger in memory at once."""
        self.ends = self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout_s
        while not self.caught_up():
            if _stopped(stop) or time.monotonic() > deadline:
                raise LedgerUnavailable("ledger topic %s not read to its end" % self.topic)
            yield self.poll()

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def apply_records(state: dict[bytes, StatusEntry], records: list[tuple[bytes, bytes | None]]) -> list[StatusEntry]:
    """Apply ledger records to `state` (a tombstone removes its key); returns the statuses stored, in order."""
    stored = []
    for key, value in records:
        if value is None:
            state.pop(key, None)
        elif (status := _status(value)) is not None:
            state[key] = status
            stored.append(status)
    return stored


def apply_standings(standings, records: list[tuple[bytes, bytes | None]]) -> None:
    """apply_records keeping only what decides which status wins, under the key's digest: the status processor's
    view of the ledger, in a dict or a DigestStore (one statement and commit per poll)."""
    latest = {}
    for key, value in records:
        if value is None:
            latest.pop(key_digest(key), None)
            standings.pop(key_digest(key), None)
        elif (status := _status(value)) is not None:
            latest[key_digest(key)] = status.standing
    standings.update(latest)
    if isinstance(standings, DigestStore):
        standings.commit()


def apply_to_store(store: StatusStore, records: list[tuple[bytes, bytes | None]]) -> list[StatusEntry]:
    """apply_records into the API's on-disk store, one statement and commit per poll; returns the statuses stored,
    in order."""
    stored, latest = [], {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
            store.pop(key)
        elif (status := _status(value)) is not None:
            latest[key] = (status, value)
            stored.append(status)
    store.put_many(latest)
    store.commit()
    return stored


def _status(value: bytes) -> StatusEntry | None:
    try:
        return StatusEntry.from_kafka(value)
    except EntryError as exc:
        log(LOG, logging.WARNING, "ignoring a ledger record that is not a status", error=str(exc))
        return None


def _partitions(consumer, topic: str, stop: threading.Event | None, timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if _stopped(stop) or time.monotonic() > deadline:
            raise LedgerUnavailable("ledger topic %s has no partitions" % topic)
        time.sleep(0.2)


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def find(state: dict[bytes, StatusEntry], bucket: str, key: str, version_id: str | None = None,
         site: str | None = None) -> list[StatusEntry]:
    """Statuses of `bucket`/`key` (one version or all), oldest write first."""
    found = [
        s for s in state.values()
        if s.entry.bucket == bucket and s.entry.key == key
        and (version_id is None or s.entry.version_id == version_id) and (site is None or s.site == site)
    ]
    return sorted(found, key=lambda s: (s.entry.enqueued_at, s.site))


def failed(state: dict[bytes, StatusEntry], site: str | None = None, bucket: str | None = None,
           key: str | None = None, version_id: str | None = None) -> list[StatusEntry]:
    """FAILED statuses, optionally of one site, bucket, key or version, oldest first (the CLI's and API's list)."""
    found = [
        s for s in state.values()
        if s.status == FAILED and (site is None or s.site == site) and (bucket is None or s.entry.bucket == bucket)
        and (key is None or s.entry.key == key) and (version_id is None or s.entry.version_id == version_id)
    ]
    return sorted(found, key=lambda s: (s.updated_at, s.entry.bucket, s.entry.key))


class KnownVersions:
    """The (site, bucket, key, version id) of statuses seen, whatever their status, kept as 16-byte digests of
    their ledger keys in an on-disk store (store.py): the populator holds one for each version of every replicated
    bucket, which in memory cost about 100 B each (tests/bench/ledger_memory.py)."""

    def __init__(self, state_dir: str | None = None):
        self.digests = digest_set(state_dir)

    def learn(self, statuses: Iterable[StatusEntry]) -> None:
        self.digests.update({key_digest(s.ledger_key): b"" for s in statuses})
        self.digests.commit()

    def __contains__(self, ids: tuple[str, str, str, str]) -> bool:
        return key_digest(ledger_key(*ids)) in self.digests

    def __len__(self) -> int:
        return len(self.digests)

    def close(self) -> None:
        self.digests.close()
