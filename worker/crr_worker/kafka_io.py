"""Kafka plumbing shared by the components: topics created if missing, durable producers, manual-commit consumers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from crr_worker.config import WorkerConfig
from crr_worker.kafka_crc import use_c_crc32c
from crr_worker.logs import log

COMPACTED = {"cleanup.policy": "compact"}
CONTROL_SUFFIX = "-control"
POPULATOR_SUFFIX = "-populator"
CHECKPOINT_SUFFIX = "-checkpoints"
FIRST_COPIES_SUFFIX = "-first-copies"
# Written at every chunk of first copies and read from its last record only: small segments let compaction keep
# it to a few records.
FIRST_COPIES_CONFIG = dict(COMPACTED, **{"segment.ms": "600000"})
FETCH_MIN_BYTES = 64 * 1024
T = TypeVar("T")
# Every process that talks to Kafka imports this module first: its record batches get the C CRC-32C from here on.
CRC32C = use_c_crc32c()


def control_topic(config: WorkerConfig) -> str:
    """The control topic's name (pause/resume), derived from the replication topic so pairs of topics never mix."""
    return config.topic + CONTROL_SUFFIX


def populator_topic(config: WorkerConfig) -> str:
    """The one-partition topic whose holder in the group of the same name is the active populator (leadership)."""
    return config.topic + POPULATOR_SUFFIX


def checkpoint_topic(config: WorkerConfig) -> str:
    """The change feed's checkpoints (compacted, one record per log): where the active populator resumes."""
    return config.topic + CHECKPOINT_SUFFIX


def first_copies_topic(config: WorkerConfig) -> str:
    """The active populator's announcements of first copies (crr_worker.first_copies)."""
    return config.topic + FIRST_COPIES_SUFFIX


def ensure_topics(config: WorkerConfig) -> None:
    """Create the worker's topics when missing; existing ones are left alone.

    Replication and status topics; the ledger, compacted; the control and checkpoint topics, compacted with
    one partition (a handful of records, read whole); the populators' topic, one partition and never a record; the
    first copies' topic, compacted with one partition (its last record is read).
    """
    partitions = config.kafka.partitions
    create_missing_topics(config, {
        config.topic: (partitions, {}),
        config.status_topic: (partitions, {}),
        config.ledger_topic: (partitions, COMPACTED),
        control_topic(config): (1, COMPACTED),
        checkpoint_topic(config): (1, COMPACTED),
        populator_topic(config): (1, {}),
        first_copies_topic(config): (1, FIRST_COPIES_CONFIG),
    })


def create_missing_topics(config: WorkerConfig, wanted: dict[str, tuple[int, dict[str, str]]]) -> None:
    """Create each topic of `wanted` (name -> partitions, topic configs) that does not exist yet.

    The worker's one way of creating topics: the broker's auto-creation would make them with its defaults
    (not compacted), so components call this before they read or write a topic.
    """
    admin = KafkaAdminClient(bootstrap_servers=list(config.kafka.hosts), client_id="crr-worker-admin")
    try:
        existing = set(admin.list_topics())
        for name, (partitions, configs) in wanted.items():
            if name in existing:
                continue
            topic = NewTopic(name, partitions, config.kafka.replication_factor, topic_configs=configs)
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass  # another component created it meanwhile
    finally:
        admin.close()


def make_producer(config: WorkerConfig) -> KafkaProducer:
    """A producer whose sends are durable once flush() returns (acks from all in-sync replicas)."""
    return KafkaProducer(
        bootstrap_servers=list(config.kafka.hosts),
        acks="all",
        retries=10,
        linger_ms=5,
        max_in_flight_requests_per_connection=1,  # keeps per-key order across retries
        client_id="crr-worker",
    )


def make_consumer(config: WorkerConfig, group_id: str | None, **options) -> KafkaConsumer:
    """A consumer that never commits by itself: components commit only what is durably done.

    A fetch waits for FETCH_MIN_BYTES of records, up to `fetch_max_wait_ms` (kafka-python's default: 500 ms,
    which the processor lowers to 100). With kafka-python's default minimum (answer as soon as one byte is
    there) a busy topic is read a few records per round trip, and those round trips were most of the broker's
    CPU in the benchmark (docs/performance-history.md). Idle, a consumer asks once per wait, as before.
    """
    return KafkaConsumer(
        bootstrap_servers=list(config.kafka.hosts),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_min_bytes=FETCH_MIN_BYTES,
        client_id="crr-worker",
        **options,
    )


def send_all(producer: KafkaProducer, topic: str, messages: list[tuple[bytes, bytes]], timeout_s: float = 30.0) -> None:
    """Send `messages` and return once Kafka acknowledged every one; raises the first send error.

    flush() alone does not report failed sends, so each future is checked.
    """
    futures = [producer.send(topic, key=key, value=value) for key, value in messages]
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)


def read_compacted(config: WorkerConfig, topic: str, stop, timeout_s: float = 60.0) -> dict[bytes, bytes]:
    """The latest value of every key of a one-partition compacted topic, read to the end it had when called."""
    consumer = make_consumer(config, None)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout_s
        while consumer.position(partition) < end:
            if stop.is_set() or time.monotonic() > deadline:
                raise RuntimeError("topic %s not read to its end" % topic)
            for messages in consumer.poll(timeout_ms=200).values():
                latest.update((m.key, m.value) for m in messages)
        return latest
    finally:
        consumer.close(autocommit=False)


def wait_for_partitions(consumer: KafkaConsumer, topic: str, stop, timeout_s: float = 60.0) -> None:
    """Block until the consumer's metadata knows `topic`'s partitions.

    Subscribing before that makes the group assign nothing to the first member, and a freshly created topic
    takes a moment to appear in metadata.
    """
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for_topic(topic):
        if stop.is_set() or time.monotonic() > deadline:
            raise RuntimeError("topic %s has no partitions in the broker metadata" % topic)
        consumer.topics()  # forces a metadata refresh
        stop.wait(0.2)


def subscribed(consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener, stop) -> KafkaConsumer:
    """`consumer` subscribed to `topic` with `listener` once the topic's partitions are known (it joins its group at
    its first poll); closed when that fails.

    The metadata refresh after subscribe() makes kafka-python note the topic's partitions before the first join.
    Without it the first assignment is made on an empty snapshot, the next refresh makes the member join again,
    and kafka-python 3.0.12 loses that second join when a poll times out between SyncGroup and its reply: no
    assignment, heartbeats off, the member dropped by the group and its owner stuck until rejoin_when_stuck
    (reproduced in 2 of 8 processor starts on a 2-core machine, 0 of 20 with the refresh)."""
    try:
        wait_for_partitions(consumer, topic, stop)
        consumer.subscribe([topic], listener=listener)
        consumer.topics()  # a metadata update: the coordinator's snapshot of the subscription's partitions
    except BaseException:
        consumer.close(autocommit=False)
        raise
    return consumer


class TimedRebalances(ConsumerRebalanceListener):
    """A rebalance listener that knows how long the rebalance under way has lasted, from subscribe() (the first
    join) or a revocation to the assignment that ends it. kafka-python 3.0 was seen to leave a member in a
    rebalance that never ends, on its own side, while the group had dropped it: its owner then joins again as a
    new member (docs/deployment.md). Subclasses call super() in both callbacks (kafka-python passes a lost
    partition to on_partitions_revoked)."""

    def __init__(self):
        self.started: float | None = time.monotonic()

    def lasted(self, now: float) -> float:
        """How long the rebalance under way has lasted; 0 when none is."""
        return 0.0 if self.started is None else now - self.started

    def on_partitions_revoked(self, revoked):
        self.started = time.monotonic()

    def on_partitions_assigned(self, assigned):
        self.started = None


def rejoin_when_stuck(rebalances: TimedRebalances, stuck_after_s: float, join: Callable[[], T], logger,
                      members: str, **fields) -> T | None:
    """What join() makes (a new member of the group) once the rebalance of `rebalances` has lasted `stuck_after_s`,
    logged as `<members> rebalance stuck: joining again` on the caller's `logger` with `fields`; None while it has
    not, or when joining failed (logged too: the stuck member stays, and the caller's next turn tries again)."""
    stuck_s = rebalances.lasted(time.monotonic())
    if stuck_s < stuck_after_s:
        return None
    log(logger, logging.WARNING, "%s rebalance stuck: joining again" % members, stuck_s=round(stuck_s, 1), **fields)
    try:
        return join()
    except Exception as exc:  # noqa: BLE001 - whatever Kafka raises, the stuck member stays for now
        log(logger, logging.WARNING, "%s not joined again" % members, error=str(exc), **fields)
        return None
