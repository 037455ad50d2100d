"""The sandbox broker behaves as the worker relies on: partitions, groups, manual commits."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

MESSAGES = 10_000
PARTITIONS = 4


@pytest.fixture
def topic(sandbox):
    """A fresh 4-partition topic holding 10,000 keyed messages 0..9999."""
    name = "test-%s" % uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=sandbox.kafka_bootstrap)
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=sandbox.kafka_bootstrap, acks="all", linger_ms=5)
    for i in range(MESSAGES):
        producer.send(name, key=b"key-%d" % (i % 97), value=b"%d" % i)
    producer.flush()
    producer.close()
    return name


def _consumer(sandbox, group, **extra):
    return KafkaConsumer(
        bootstrap_servers=sandbox.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **extra,
    )


def _consume(consumer, count, timeout=60):
    """Poll until count records arrived; returns them (fails on timeout)."""
    records = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500, max_records=count - len(records)).values():
            records.extend(batch)
    assert len(records) == count, "got %d of %d records before the deadline" % (len(records), count)
    return records


def test_topic_has_four_partitions_holding_all_messages(sandbox, topic):
    consumer = _consumer(sandbox, "g-%s" % uuid.uuid4().hex)
    consumer.subscribe([topic])
    records = _consume(consumer, MESSAGES)
    consumer.close()
    assert sorted(int(r.value) for r in records) == list(range(MESSAGES))
    assert {r.partition for r in records} == set(range(PARTITIONS))


def test_restarted_consumer_resumes_exactly_after_last_commit(sandbox, topic):
    group = "g-%s" % uuid.uuid4().hex
    first = _consumer(sandbox, group, max_poll_records=500)
    first.subscribe([topic])
    seen = _consume(first, 6_000)
    # Commit exactly what was processed: next offset per partition.
    offsets = {}
    for record in seen:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = OffsetAndMetadata(max(record.offset + 1, offsets.get(tp, OffsetAndMetadata(0, "", -1)).offset),
                                        "", -1)
    first.commit(offsets)
    first.close(autocommit=False)

    second = _consumer(sandbox, group)
    second.subscribe([topic])
    rest = _consume(second, MESSAGES - len(seen))
    assert second.poll(timeout_ms=2000) == {}  # nothing beyond the remainder: no replay
    second.close()

    first_values = {int(r.value) for r in seen}
    rest_values = {int(r.value) for r in rest}
    assert first_values.isdisjoint(rest_values)
    assert first_values | rest_values == set(range(MESSAGES))


def test_two_consumers_in_one_group_split_the_partitions(sandbox, topic):
    group = "g-%s" % uuid.uuid4().hex
    consumers = [_consumer(sandbox, group) for _ in range(2)]
    for consumer in consumers:
        consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for consumer in consumers:
            consumer.poll(timeout_ms=200, max_records=1)
        assignments = [consumer.assignment() for consumer in consumers]
        if all(assignments) and sum(len(a) for a in assignments) == PARTITIONS:
            break
    for consumer in consumers:
        consumer.close(autocommit=False)
    assert all(assignments), "each consumer gets partitions: %s" % assignments
    assert assignments[0].isdisjoint(assignments[1])
    assert {tp.partition for a in assignments for tp in a} == set(range(PARTITIONS))
