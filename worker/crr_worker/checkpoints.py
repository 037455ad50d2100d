"""Where each change log was read up to, kept in Kafka so that a standby populator on another host resumes there.

One compacted one-partition topic (kafka_io.checkpoint_topic), one record per log: `{"nextSeq": N}`. A
checkpoint is written only after the entries read before it are acknowledged by Kafka, so a crash re-reads
a range (its entries are published twice, which the targets' idempotence absorbs) and never skips one.
"""

from __future__ import annotations

import json
import threading

from kafka import KafkaProducer

from crr_worker.config import WorkerConfig
from crr_worker.entries import now_ms
from crr_worker.kafka_io import checkpoint_topic, read_compacted, send_all


class Checkpoints:
    def __init__(self, config: WorkerConfig, producer: KafkaProducer):
        self.config = config
        self.producer = producer

    def load(self, stop: threading.Event) -> dict[str, int]:
        """The next sequence number to read of every log that has a checkpoint."""
        found = {}
        for key, value in read_compacted(self.config, checkpoint_topic(self.config), stop).items():
            if key is None or value is None:
                continue
            try:
                found[key.decode("utf-8")] = int(json.loads(value)["nextSeq"])
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours: the log is then read from its configured start
        return found

    def save(self, positions: dict[str, int]) -> None:
        """Record `positions` (log name -> next sequence number); returns once Kafka acknowledged them."""
        records = [(name.encode("utf-8"), json.dumps({"nextSeq": seq, "updatedAt": now_ms()}).encode("utf-8"))
                   for name, seq in positions.items()]
        send_all(self.producer, checkpoint_topic(self.config), records)
