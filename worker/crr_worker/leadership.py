"""One active populator per deployment, the others on standby; leadership is a Kafka group assignment.

Every populator joins the group `<topic>-populator` on the one-partition topic of the same name. Kafka gives
that partition to one member at a time, and to another one when that member leaves (a clean stop) or stops
heartbeating (a crash: after SESSION_TIMEOUT_MS). Nothing is ever written to the topic: only who holds its
partition matters, and the holder pauses it so that it is never fetched. The sticky assignor leaves the
partition where it is when a standby joins.

Holding the partition is not enough: kafka-python keeps the assignment of a member cut off from the group
coordinator, which meanwhile gives the partition to another member. So the holder also commits an offset on
it about twice a second (the coordinator accepts a commit only from a member of the current generation) and
leads only within LEASE_S of a commit it sent that succeeded: a cut-off leader stops leading before the
session timeout can let another member take over.

Each commit carries the member's token, so a member taking the lead reads who led last: when it was itself (a
rebalance took the partition away for a moment and gave it back), no other populator can have left a scan
half done, and the active one need not list every bucket again.

A member can also get stuck in a rebalance on its own side (seen with kafka-python 3.0: a join that never
completed, for minutes, while the group had dropped the member): a rebalance that lasts longer than
STUCK_REBALANCE_S makes the member leave and join again as a new one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.structs import OffsetAndMetadata

from crr_worker.config import WorkerConfig
from crr_worker.kafka_io import TimedRebalances, make_consumer, populator_topic, rejoin_when_stuck, subscribed
from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.leadership")
SESSION_TIMEOUT_MS = 10_000  # how long a crashed leader holds on; kafka-python's default is 45 s
HEARTBEAT_INTERVAL_MS = 3_000
# How long the group waits for members to rejoin in a rebalance (kafka-python's max_poll_interval_ms: 5 min
# by default); the leadership thread polls twice a second, so a member that cannot rejoin in time is hung.
REBALANCE_TIMEOUT_MS = 20_000
STUCK_REBALANCE_S = 30.0  # longer than a rebalance can take in a live group
# A cut-off leader's last heartbeat can be one interval before its last commit: the group expires it at the
# earliest SESSION_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS after that commit. The lease ends well before.
LEASE_S = 4.0
POLL_MS = 500  # the partition is paused, so each poll waits this long; the group protocol runs inside it


class Lease:
    """Leadership until `expires` (monotonic seconds), counted from when the renewing commit was sent."""

    def __init__(self, duration_s: float):
        self.duration_s = duration_s
        self.expires = 0.0
        self.revoked_at = 0.0
        self.gained_at = 0.0  # start of the current stretch of leadership

    def renew(self, sent_at: float) -> None:
        """A commit sent at `sent_at` succeeded; it does not count if the partition was revoked since."""
        if sent_at <= self.revoked_at:
            return
        if sent_at >= self.expires:
            self.gained_at = sent_at
        self.expires = sent_at + self.duration_s

    def revoke(self, now: float) -> None:
        self.revoked_at = now
        self.expires = 0.0

    def valid(self, now: float) -> bool:
        return now < self.expires

    def held_since(self, since: float, now: float) -> bool:
        """Valid now, and without a break since `since`."""
        return self.valid(now) and self.gained_at <= since


class Leadership:
    """Whether this populator is the active one. A thread of its own keeps polling the group (kafka-python moves
    joins, syncs and heartbeats on only inside a poll, and a member that polls seldom makes the group rebalance
    again and again) and renews the lease; check() only reads the lease."""

    def __init__(self, config: WorkerConfig, stop: threading.Event):
        self.topic = populator_topic(config)
        self.lease = Lease(LEASE_S)
        self.token = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self.followed_another = threading.Event()
        self.config = config
        self.consumer, self.rebalances = self._join(stop)
        self.leading: bool | None = None  # as last logged
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._keep_up, name="leadership", daemon=True)
        self.thread.start()

    def check(self) -> bool:
        """True while this populator leads; logs each change."""
        leading = self.lease.valid(time.monotonic())
        if leading != self.leading:
            log(LOG, logging.INFO, "populator active" if leading else "populator standing by", group=self.topic)
            self.leading = leading
        return leading

    def held_since(self, since: float) -> bool:
        """Whether this populator led without a break from `since` (time.monotonic()) until now."""
        return self.lease.held_since(since, time.monotonic())

    def took_over(self) -> bool:
        """Whether this populator took the lead from another one since the last call (true at the first): the
        other one may have stopped in the middle of a scan."""
        took = self.followed_another.is_set()
        self.followed_another.clear()
        return took

    def close(self) -> None:
        """Leave the group at once, so that a standby takes over without waiting for the session timeout."""
        self.lease.revoke(time.monotonic())
        self.closing.set()
        self.thread.join(timeout=SESSION_TIMEOUT_MS / 1000.0)

    def _join(self, stop: threading.Event):
        """A new member of the group, subscribed (it joins at its first poll), and the listener that holds its
        partition paused."""
        consumer = make_consumer(self.config, self.topic, session_timeout_ms=SESSION_TIMEOUT_MS,
                                 heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS, max_poll_interval_ms=REBALANCE_TIMEOUT_MS,
                                 partition_assignment_strategy=(StickyPartitionAssignor,))
        rebalances = _HoldPaused(consumer, self.lease, self.topic)
        return subscribed(consumer, self.topic, rebalances, stop), rebalances

    def _keep_up(self) -> None:
        """Until closed; an error only costs the lease, and the next turn tries again."""
        try:
            while not self.closing.is_set():
                try:
                    self._turn()
                except Exception as exc:  # noqa: BLE001 - whatever Kafka raises, the group may not count us in
                    self.lease.revoke(time.monotonic())
                    log(LOG, logging.INFO, "leadership not confirmed", group=self.topic, error=str(exc))
                    self.closing.wait(POLL_MS / 1000.0)
                self._rejoin_if_stuck()
        finally:
            self.consumer.close(autocommit=False)

    def _rejoin_if_stuck(self) -> None:
        """Leave and join again as a new member when this one's rebalance has lasted too long."""
        fresh = rejoin_when_stuck(self.rebalances, STUCK_REBALANCE_S, lambda: self._join(self.closing), LOG,
                                  "populators' group", group=self.topic)
        if fresh is None:
            return
        stuck, self.consumer, self.rebalances = self.consumer, *fresh
        self.lease.revoke(time.monotonic())
        stuck.close(autocommit=False, timeout_ms=POLL_MS)

    def _turn(self) -> None:
        """One poll of the group, then a commit on the partition if this member holds it; that renews the lease."""
        self.consumer.poll(timeout_ms=POLL_MS)
        held = self.consumer.assignment()
        if not held:
            self.lease.revoke(time.monotonic())
            return
        sent_at = time.monotonic()
        if not self.lease.valid(sent_at) and self._last_leader(held) != self.token:
            self.followed_another.set()
        self.consumer.commit({p: OffsetAndMetadata(0, self.token, -1) for p in held}, timeout_ms=LEASE_S * 1000)
        self.lease.renew(sent_at)

    def _last_leader(self, held) -> str:
        """The token of the last member whose commit on the partition succeeded; "" if none ever did."""
        last = self.consumer.committed(next(iter(held)), metadata=True, timeout_ms=LEASE_S * 1000)
        return last.metadata if last is not None else ""


class _HoldPaused(TimedRebalances):
    """Pause the partition when it comes (it is never read); give up the lease the moment it goes."""

    def __init__(self, consumer, lease: Lease, topic: str):
        super().__init__()
        self.consumer, self.lease, self.topic = consumer, lease, topic

    def on_partitions_revoked(self, revoked):
        super().on_partitions_revoked(revoked)
        if revoked:
            self.lease.revoke(self.started)

    def on_partitions_assigned(self, assigned):
        super().on_partitions_assigned(assigned)
        if assigned:
            self.consumer.pause(*assigned)
        log(LOG, logging.INFO, "populators' group rebalanced", group=self.topic, holds_partition=bool(assigned))
