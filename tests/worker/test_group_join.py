"""A consumer of ours joins its group once (crr_worker.kafka_io.subscribed), against the real broker.

kafka-python 3.0.12 takes its snapshot of a subscription's partitions at metadata updates only. A member whose first
assignment was made before one joined again at the next update, and that second join could be lost for good
when a poll timed out during it (the member then stayed without partitions until rejoin_when_stuck, 90 s later).
"""

import threading
import uuid

from crr_worker.kafka_io import TimedRebalances, ensure_topics, make_consumer, subscribed

from tests.worker.harness import wait_for


class _Counted(TimedRebalances):
    def __init__(self):
        super().__init__()
        self.assigned: list[set] = []
        self.revoked: list[set] = []

    def on_partitions_revoked(self, revoked):
        super().on_partitions_revoked(revoked)
        if revoked:
            self.revoked.append(set(revoked))

    def on_partitions_assigned(self, assigned):
        super().on_partitions_assigned(assigned)
        self.assigned.append(set(assigned))


def test_a_metadata_update_after_the_first_assignment_does_not_make_the_member_join_again(pair):
    config = pair.load()
    ensure_topics(config)
    rebalances = _Counted()
    group = "crr-join-%s" % uuid.uuid4().hex[:8]
    consumer = subscribed(make_consumer(config, group), config.topic, rebalances, threading.Event())
    try:
        # what the first JoinGroup's assignment is compared with later (kafka-python's own state: no broker
        # event shows it before the join)
        partitions = set(range(config.kafka.partitions))
        assert consumer._coordinator._metadata_snapshot == {config.topic: partitions}
        wait_for(lambda: consumer.poll(timeout_ms=100) is not None and rebalances.assigned, 60, 0,
                 "the first assignment")
        consumer.topics()  # the metadata update that used to make the member join again
        for _ in range(5):  # a rejoin is decided at the next poll
            consumer.poll(timeout_ms=100)
        assert rebalances.revoked == []
        assert [{p.partition for p in assigned} for assigned in rebalances.assigned] == [partitions]
    finally:
        consumer.close(autocommit=False)
