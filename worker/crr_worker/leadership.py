"""One active populator per deployment, the others on standby; leadership is a Kafka group assignment.

Every populator joins the group `<topic>-populator` on the one-partition topic of the same name. Kafka gives
that partition to one member at a time, and to another one when that member leaves (a clean stop) or stops
heartbeating (a crash: after SESSION_TIMEOUT_MS). Nothing is ever written to the topic: only who holds its
partition matters, and the holder pauses it so that it is never fetched. The sticky assignor leaves the
partition where it is when a standby joins.

Two populators can briefly both act (one that has not polled for max_poll_interval_ms is dropped from the
group while it finishes its listing); the processors' idempotence check makes that harmless, only wasteful.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import ConsumerRebalanceListener
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from crr_worker.config import WorkerConfig
from crr_worker.kafka_io import make_consumer, populator_topic, wait_for_partitions
from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.leadership")
SESSION_TIMEOUT_MS = 10_000  # how long a crashed leader holds on; kafka-python's default is 45 s
CHECK_EVERY_S = 1.0
POLL_MS = 20


class Leadership:
    """Whether this populator is the active one; check() must be called regularly (it runs the group protocol)."""

    def __init__(self, config: WorkerConfig, stop: threading.Event):
        self.topic = populator_topic(config)
        self.consumer = make_consumer(config, self.topic, session_timeout_ms=SESSION_TIMEOUT_MS,
                                      partition_assignment_strategy=(StickyPartitionAssignor,))
        wait_for_partitions(self.consumer, self.topic, stop)
        self.consumer.subscribe([self.topic], listener=_PauseAssigned(self.consumer))
        self.leading: bool | None = None  # unknown until the first check
        self.checked_at = 0.0

    def check(self) -> bool:
        """True while this populator holds the group's partition; logs each change.

        Each check is a poll of POLL_MS: kafka-python moves the group protocol (join, sync, rebalance) on only
        within a poll that has time to spare, and a poll with nothing to fetch waits its whole timeout. So the
        active populator asks at most every CHECK_EVERY_S; a standby, which has nothing else to do, at each call.
        """
        if self.leading and time.monotonic() - self.checked_at < CHECK_EVERY_S:
            return True
        self.consumer.poll(timeout_ms=POLL_MS)
        self.checked_at = time.monotonic()
        leading = bool(self.consumer.assignment())
        if leading != self.leading:
            log(LOG, logging.INFO, "populator active" if leading else "populator standing by", group=self.topic)
            self.leading = leading
        return leading

    def close(self) -> None:
        """Leave the group at once, so that a standby takes over without waiting for the session timeout."""
        self.consumer.close(autocommit=False)


class _PauseAssigned(ConsumerRebalanceListener):
    def __init__(self, consumer):
        self.consumer = consumer

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        if assigned:
            self.consumer.pause(*assigned)
