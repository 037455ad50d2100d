"""First copies: versions the target may write without looking first, and the record that keeps that safe.

A first copy is the source's newest version of its key, published by the populator for the first time. No replica
of it can be on a site yet, nor of a newer version, so the aws_s3 target writes it without the HEAD that makes a
write idempotent: one request fewer per version, on the source's busiest path (new keys).

The populator may publish a version twice without knowing it in one way only: it crashes between the
acknowledgement of a chunk's entries and that of their PENDING marks. The feed is then read again from its
checkpoint and the first scan finds those versions unknown. So before each chunk holding first copies, the active
populator writes their digests to the first-copies topic (one record, acknowledged), and the next active populator
(the same one restarted, or a standby taking over) reads the last record back and publishes those versions as
ordinary entries. The processor side keeps the check where its own history calls for it (crr_worker.processor):
records that may have been handled before (below the partition's high watermark at its first fetch since it was
assigned) and tries after the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from kafka import TopicPartition

from crr_worker.config import WorkerConfig
from crr_worker.entries import ReplicationEntry
from crr_worker.kafka_io import first_copies_topic, make_consumer, send_all

DIGEST_BYTES = 16
RECORD_KEY = b"first-copies"  # one key: the topic is compacted, its last record is the one that counts
READ_TIMEOUT_S = 30.0


def version_digest(bucket: str, key: str, version_id: str) -> bytes:
    """16 bytes standing for one source version."""
    named = "\u0000".join((bucket, key, version_id)).encode("utf-8")
    return hashlib.blake2b(named, digest_size=DIGEST_BYTES).digest()


def entry_digest(entry: ReplicationEntry) -> bytes:
    return version_digest(entry.bucket, entry.key, entry.version_id)


def announce(producer, config: WorkerConfig, entries: Iterable[ReplicationEntry]) -> None:
    """Record the first copies about to be published (returns once Kafka acknowledged the record); nothing to
    record when there are none."""
    digests = b"".join(entry_digest(e) for e in entries if e.first_copy)
    if digests:
        send_all(producer, first_copies_topic(config), [(RECORD_KEY, digests)])


def last_announced(config: WorkerConfig) -> set[bytes]:
    """The digests of the last chunk of first copies announced: those a populator that stopped may have published
    without their PENDING marks."""
    consumer = make_consumer(config, None)
    try:
        partition = TopicPartition(first_copies_topic(config), 0)
        consumer.assign([partition])
        end = consumer.end_offsets([partition])[partition]
        if not end:
            return set()
        consumer.seek(partition, end - 1)
        for _ in range(int(READ_TIMEOUT_S / 0.2)):
            for messages in consumer.poll(timeout_ms=200).values():
                if messages:
                    value = messages[-1].value or b""
                    return {value[n:n + DIGEST_BYTES] for n in range(0, len(value), DIGEST_BYTES)}
            if consumer.position(partition) >= end:
                return set()  # no record at the last offset (a gap left by compaction): nothing to read back
        raise RuntimeError("topic %s not read within %.0f s" % (first_copies_topic(config), READ_TIMEOUT_S))
    finally:
        consumer.close(autocommit=False)
