"""The queue processor of one site: replication entries in, replicas written, outcomes out.

Kafka does the distribution: every processor of a site joins the consumer group `<groupId>-<site>` and gets a
share of the partitions. Inside one process, up to `concurrency` versions are copied at once, but never two
versions of the same key (they are applied in offset order). A record's offset is committed only once its
outcome (COMPLETED or FAILED) is acknowledged by Kafka, and only as part of a contiguous run of done offsets,
so a crash re-does work and never loses it; the target's idempotence check makes re-doing harmless. A first copy
(crr_worker.first_copies) skips that check only on a record produced after its partition was assigned here, which
no processor can have handled before, and only at its first try.

The Processor is the engine: it polls, keeps a key's versions in order, publishes outcomes and commits. The work
is crr_worker.replicator's: copying threads turn a record into its outcome and report back through a queue. The
bookkeeping is done by the polling thread, and by the rebalance listener, which kafka-python calls on its own IO
thread: both hold `self.bookkeeping` while they touch it, and the polling thread releases it while it waits in
poll(). The polling thread publishes the outcomes of every copy finished since its last turn together (send all,
flush once, check each), and only then counts them done and starts the next version of their keys.

An outage of the site (crr_worker.outage) is shared by the copying threads: while the site is held, fetching is
paused like under backpressure and copies wait for the site instead of spending their tries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import IllegalStateError
from kafka.structs import OffsetAndMetadata

from crr_worker.config import WorkerConfig
from crr_worker.control import ControlWatch
from crr_worker.entries import StatusEntry
from crr_worker.kafka_io import (
    TimedRebalances,
    ensure_topics,
    make_consumer,
    make_producer,
    rejoin_when_stuck,
    subscribed,
)
from crr_worker.logs import log
from crr_worker.replicator import Replicator
from crr_worker.sources.base import Source
from crr_worker.targets.base import Target

LOG = logging.getLogger("crr_worker.processor")
COMMIT_INTERVAL_S = 1.0
SHUTDOWN_GRACE_S = 20.0
# A processor killed outright is noticed by the broker when its session times out, and only then do its partitions
# move (kafka-python's default: 45 s). Heartbeats every second keep a live one in the group.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000  # at most a third of the session timeout, as Kafka asks
# Below the session timeout: the rebalance listener runs on kafka-python's IO loop, which sends no heartbeat meanwhile.
REVOKE_DRAIN_S = 6.0
PUBLISH_TIMEOUT_S = 10.0
PUBLISH_RETRY_S = 1.0
PUBLISH_INTERVAL_S = 0.05  # outcomes finished meanwhile share one produce request (one per poll turn cost the broker)
BUSY_POLL_MS = 20  # poll timeout while copies are in flight, so that their outcomes are published promptly
CONTROL_INTERVAL_S = 0.5
GIVE_UP_CHECK_S = 0.5  # how soon a copy waiting (retry delay, outage) notices that the worker stops
FETCH_WAIT_MS = 100  # entries are fetched in batches, but a lone entry waits no longer than this
STUCK_REBALANCE_S = 90.0  # a rebalance of ours lasting this long will not end (kafka_io.TimedRebalances)


@dataclass
class _PartitionProgress:
    """Offsets of one partition taken but not yet done; what may be committed is below the lowest of them."""

    outstanding: set = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None

    def take(self, offset: int) -> None:
        self.outstanding.add(offset)
        self.next_offset = max(self.next_offset or 0, offset + 1)

    def committable(self) -> int | None:
        return min(self.outstanding) if self.outstanding else self.next_offset


@dataclass
class _Record:
    partition: TopicPartition
    offset: int
    key: bytes
    value: bytes


class _GiveUp:
    """What a copy checks to give up (is_set, wait: the two methods of threading.Event it uses): the worker stops,
    or the partition of its record was revoked, so that a copy still running after the rebalance drain never writes
    beside the partition's next owner."""

    def __init__(self, stop: threading.Event, revoked: threading.Event):
        self.stop, self.revoked = stop, revoked

    def is_set(self) -> bool:
        return self.revoked.is_set() or self.stop.is_set()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.revoked.wait(min(left, GIVE_UP_CHECK_S))
        return True


class Processor:
    """Consumes the replication topic for one site and writes replicas through `target`."""

    def __init__(self, config: WorkerConfig, site: str, source: Source, target: Target, stop: threading.Event):
        self.config = config
        self.site = config.site(site)
        self.work = Replicator(config, site, source, target, stop)
        self.stop = stop
        self.settings = config.queue_processor
        self.group_id = self.settings.group_id(self.site.site)
        self.max_outstanding = self.settings.concurrency * 4
        self.progress: dict[TopicPartition, _PartitionProgress] = {}
        self.waiting: dict[bytes, deque] = {}  # key -> records queued behind the one in flight (never empty)
        self.in_flight = 0
        self.holding = False  # during a rebalance: finish in-flight work, start nothing new
        self.running_keys: set = set()
        self.rewind: dict[TopicPartition, int] = {}  # revoked partition -> first offset not done (see rewind_kept)
        self.revocations: dict[TopicPartition, threading.Event] = {}  # set when the partition is revoked (_GiveUp)
        # partition -> its high watermark at its first fetch since it was assigned here: records from there on are
        # first deliveries, which no processor can have handled before
        self.first_new: dict[TopicPartition, int] = {}
        self.unmeasured: set[TopicPartition] = set()  # assigned, end offset not known yet (_measure_assigned)
        self.finished: queue.Queue = queue.Queue()
        self.unpublished: list[tuple[_Record, StatusEntry]] = []  # finished, outcome not yet acknowledged
        self.publish_after = 0.0
        self.bookkeeping = threading.RLock()  # the polling thread's, and the rebalance listener's (module docstring)
        self.consumer = None
        self.rebalances: _Rebalance | None = None
        self.producer = None
        self.pool = None
        self.control = ControlWatch(config)
        self.paused = False  # by the operator (pause/resume API), for every processor of the site

    def run(self) -> None:
        """Process until `stop` is set, then finish or abandon in-flight work and commit what is done."""
        ensure_topics(self.config)
        self.producer = make_producer(self.config)
        self.control.load(self.stop)  # a site paused before we started must not fetch anything
        self._follow_control()
        self.consumer, self.rebalances = self._join()
        self.pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="copy-%s" % self.site.site)
        log(LOG, logging.INFO, "processor started", site=self.site.site, group=self.group_id)
        last_commit = last_control = time.monotonic()
        try:
            while not self.stop.is_set():
                with self.bookkeeping:
                    if time.monotonic() - last_control >= CONTROL_INTERVAL_S:
                        self._follow_control()
                        last_control = time.monotonic()
                    self._collect_finished(block_s=0)
                    blocked = self._apply_backpressure()
                timeout_ms = 0 if blocked else BUSY_POLL_MS if self.in_flight else 200
                polled = self.consumer.poll(timeout_ms=timeout_ms)  # the rebalance listener may run meanwhile
                with self.bookkeeping:
                    self._measure_assigned()
                    for partition, messages in polled.items():
                        for message in messages:
                            self._accept(_Record(partition, message.offset, message.key or b"", message.value))
                    if time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                        self._commit()
                        last_commit = time.monotonic()
                self._rejoin_if_stuck()
        finally:
            self._shutdown()

    def _join(self):
        """A new member of the site's group, subscribed (it joins at its first poll), and its rebalance listener."""
        consumer = make_consumer(self.config, self.group_id, max_poll_records=self.settings.concurrency * 2,
                                 fetch_max_wait_ms=FETCH_WAIT_MS, session_timeout_ms=SESSION_TIMEOUT_MS,
                                 heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
        rebalances = _Rebalance(self)
        return subscribed(consumer, self.config.topic, rebalances, self.stop), rebalances

    def _rejoin_if_stuck(self) -> None:
        """Leave and join again as a new member when this one's rebalance (its first join too) has lasted far
        longer than one takes (kafka_io.TimedRebalances). A rebalance begins with the revocation, which let go
        of everything taken: the new member starts from the committed offsets, as the partitions' next owner."""
        fresh = rejoin_when_stuck(self.rebalances, STUCK_REBALANCE_S, self._join, LOG, "processors' group",
                                  site=self.site.site, group=self.group_id)
        if fresh is None:
            return
        with self.bookkeeping:
            stuck, (self.consumer, self.rebalances) = self.consumer, fresh
            self.rewind.clear()  # the new member reads from the committed offsets
            self.first_new.clear()
        stuck.close(autocommit=False, timeout_ms=1000)

    def _measure_assigned(self) -> None:
        """Note where each partition just assigned ended: the high watermark of its first fetch here (no request;
        records fetched with it are below it, and every record this member fetched before is too)."""
        for partition in list(self.unmeasured):
            try:
                end = self.consumer.highwater(partition)
            except IllegalStateError:  # revoked meanwhile
                end = None
            if end is not None:
                self.first_new[partition] = end
                self.unmeasured.discard(partition)

    def _accept(self, record: _Record) -> None:
        progress = self.progress.setdefault(record.partition, _PartitionProgress())
        progress.take(record.offset)
        if record.key in self.running_keys or record.key in self.waiting:
            self.waiting.setdefault(record.key, deque()).append(record)  # behind an older version of this key
        else:
            self._dispatch(record)

    def _dispatch(self, record: _Record) -> None:
        self.in_flight += 1
        self.running_keys.add(record.key)
        revoked = self.revocations.setdefault(record.partition, threading.Event())
        where = "partition %d offset %d" % (record.partition.partition, record.offset)
        first_delivery = record.offset >= self.first_new.get(record.partition, float("inf"))
        future = self.pool.submit(self.work.process, record.value, where, _GiveUp(self.stop, revoked), first_delivery)
        future.add_done_callback(lambda f, r=record: self.finished.put((r, f)))

    def _collect_finished(self, block_s: float) -> None:
        """Account for finished records: their outcomes are published (one flush for all), then done offsets
        become committable and the key's next version starts."""
        try:
            record, future = self.finished.get(timeout=block_s) if block_s else self.finished.get_nowait()
        except queue.Empty:
            self._publish_outcomes()
            return
        while True:
            result = None if future.cancelled() or future.exception() is not None else future.result()
            if isinstance(result, StatusEntry):
                self.unpublished.append((record, result))
            else:
                self._release(record, done=bool(result))
            try:
                record, future = self.finished.get_nowait()
            except queue.Empty:
                break
        self._publish_outcomes()

    def _release(self, record: _Record, done: bool) -> None:
        """The record is no longer in flight; done (committable) or abandoned (redone after a restart)."""
        self.in_flight -= 1
        self.running_keys.discard(record.key)
        progress = self.progress.get(record.partition)
        if done and progress is not None:
            progress.outstanding.discard(record.offset)
        self._start_next_of_key(record.key)

    def _publish_outcomes(self) -> None:
        """Send every unpublished outcome, wait once for Kafka, release the acknowledged ones; at most every
        PUBLISH_INTERVAL_S.

        What Kafka refused stays unpublished and is tried again after PUBLISH_RETRY_S; when stopping it is
        abandoned instead (not committed, so redone after a restart and found on the target).
        """
        if not self.unpublished or time.monotonic() < self.publish_after:
            return
        batch, self.unpublished = self.unpublished, []
        self.publish_after = time.monotonic() + PUBLISH_INTERVAL_S
        sent = []
        for record, status in batch:
            key, value = status.to_kafka()
            try:
                sent.append((record, status, self.producer.send(self.config.status_topic, key=key, value=value)))
            except Exception as exc:  # noqa: BLE001 - Kafka errors vary; the outcome must not be lost
                sent.append((record, status, exc))
        try:
            self.producer.flush(timeout=PUBLISH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - unacknowledged sends are found below
            log(LOG, logging.WARNING, "cannot flush outcomes yet", error=str(exc))
        error = None
        for record, status, future in sent:
            try:
                if isinstance(future, Exception):
                    raise future
                if not future.is_done:
                    raise TimeoutError("not acknowledged within %.0f s" % PUBLISH_TIMEOUT_S)
                future.get(timeout=0)
            except Exception as exc:  # noqa: BLE001 - as above
                error = exc
                if self.stop.is_set():
                    self._release(record, done=False)
                else:
                    self.unpublished.append((record, status))
                continue
            self._release(record, done=True)
        if error is not None:
            log(LOG, logging.WARNING, "cannot publish outcome yet", error=str(error))
            self.publish_after = time.monotonic() + PUBLISH_RETRY_S

    def _start_next_of_key(self, key: bytes) -> None:
        if self.holding or self.stop.is_set() or key in self.running_keys:
            return  # restart_waiting() resumes after a rebalance; a stop abandons what waits
        waiting = self.waiting.get(key)
        if waiting:
            record = waiting.popleft()
            if not waiting:
                del self.waiting[key]
            self._dispatch(record)
        else:
            self.waiting.pop(key, None)

    def restart_waiting(self) -> None:
        """Start the next queued version of every key with nothing in flight (after a rebalance)."""
        for key in list(self.waiting):
            self._start_next_of_key(key)

    def _outstanding(self) -> int:
        return sum(len(p.outstanding) for p in self.progress.values())

    def _follow_control(self) -> None:
        """Take up the operator's pause or resume of this site, written by the API on the control topic."""
        self.control.refresh()
        paused = self.control.paused(self.site.site)  # the state, not the changes: load() consumed those
        if paused != self.paused:
            self.paused = paused
            log(LOG, logging.INFO, "site paused" if self.paused else "site resumed", site=self.site.site)
        # The fetch pause itself is _apply_backpressure's, which runs before every poll.

    def _apply_backpressure(self) -> bool:
        """Stop fetching while too much is taken, the site is paused or it is held by an outage; memory stays bounded
        whatever the backlog.

        A pause stops fetching only: copies already taken (at most 4 x concurrency) still finish; during an outage
        they wait for the site to answer again. True when fetching is stopped (this call then waited up to 0.2 s for
        copies to finish).
        """
        assigned = self.consumer.assignment()
        if not assigned:
            return False
        if self.paused or self.work.hold.held or self._outstanding() >= self.max_outstanding:
            self.consumer.pause(*assigned)
            self._collect_finished(block_s=0.2)
            return True
        if self.consumer.paused():
            self.consumer.resume(*assigned)
        return False

    def _commit(self) -> None:
        offsets = {}
        for partition in list(self.progress):
            progress = self.progress.get(partition)
            offset = progress.committable() if progress else None
            if offset is not None and offset != progress.committed:
                offsets[partition] = OffsetAndMetadata(offset, "", -1)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a failed commit only means some work is redone
            log(LOG, logging.WARNING, "commit failed; work since the last commit will be redone", error=str(exc))
            return
        for partition, meta in offsets.items():
            self.progress[partition].committed = meta.offset

    def drain(self, deadline_s: float) -> None:
        """Wait (bounded) until no copy is in flight, starting no new ones when stopping."""
        deadline = time.monotonic() + deadline_s
        while self.in_flight and time.monotonic() < deadline:
            self._collect_finished(block_s=0.2)

    def forget(self, partitions) -> None:
        """Drop what was taken from revoked partitions and not done: their new owner reads it again from the committed
        offset, or this processor from the first offset not done when a partition comes back to it (rewind_kept)."""
        lost = set(partitions)
        for partition in lost:
            self.revocations.pop(partition, threading.Event()).set()  # copies still running give up
            self.first_new.pop(partition, None)
            self.unmeasured.discard(partition)
            progress = self.progress.pop(partition, None)
            first_not_done = progress.committable() if progress else None
            if first_not_done is not None:
                self.rewind[partition] = first_not_done
        for key in list(self.waiting):
            kept = deque(r for r in self.waiting[key] if r.partition not in lost)
            if kept:
                self.waiting[key] = kept
            else:
                del self.waiting[key]

    def rewind_kept(self, assigned) -> None:
        """Read again what forget() dropped from the partitions assigned back to this processor.

        kafka-python keeps the fetch position of a partition present in both the old and the new assignment, so
        without this the records dropped would be skipped, and the offsets after them committed.
        """
        for partition in assigned:
            first_not_done = self.rewind.get(partition)
            if first_not_done is not None:
                self.consumer.seek(partition, first_not_done)
                # committed at the next commit: what was done before the revocation may be all there was to read
                self.progress[partition] = _PartitionProgress(next_offset=first_not_done)
        self.rewind.clear()  # a partition that went to another member: its owner reads from the committed offset

    def _shutdown(self) -> None:
        """Finish (bounded) what is in flight, commit what is done, then close: not holding the bookkeeping lock,
        since leaving the group may call the rebalance listener."""
        self.stop.set()
        with self.bookkeeping:
            if self.pool is not None:
                self.drain(SHUTDOWN_GRACE_S)
                self.pool.shutdown(wait=False, cancel_futures=True)
            if self.consumer is not None:
                self._commit()
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        if self.producer is not None:
            self.producer.close(timeout=5)
        self.control.close()
        log(LOG, logging.INFO, "processor stopped", site=self.site.site, **self.work.counts)


class _Rebalance(TimedRebalances):
    """Before partitions move to another member, let what is in flight finish (bounded), then let go: copies of
    them still running give up, and what was not done is read again by the partition's next owner.

    Finishing first keeps two members from copying one version at once; copies held by an outage write nothing,
    so they are not waited for. Nothing is committed here (kafka-python runs this on its IO thread, where commits
    cannot block); done-but-uncommitted records are redone by the new owner and recognised on the target as
    already written.
    """

    def __init__(self, processor: Processor):
        super().__init__()
        self.processor = processor

    def on_partitions_revoked(self, revoked):
        super().on_partitions_revoked(revoked)
        processor = self.processor
        with processor.bookkeeping:
            processor.holding = True
            try:
                if not processor.work.hold.held and not processor.stop.is_set():  # stopping: _shutdown drained
                    processor.drain(REVOKE_DRAIN_S)
                processor.forget(revoked)
            finally:
                processor.holding = False
            processor.restart_waiting()

    def on_partitions_assigned(self, assigned):
        with self.processor.bookkeeping:
            self.processor.rewind_kept(assigned)
            self.processor.unmeasured.update(assigned)
            if (self.processor.paused or self.processor.work.hold.held) and assigned:
                self.processor.consumer.pause(*assigned)  # fetch nothing from new partitions of a paused/held site
        super().on_partitions_assigned(assigned)
        log(LOG, logging.INFO, "partitions assigned", site=self.processor.site.site,
            partitions=sorted(p.partition for p in assigned))
