"""Automatic replays: a version FAILED for a reason that may pass is re-queued at its `replayAt`.

The processor sets `replayAt` on a FAILED status when the version's retry budget was spent on retryable errors
(a site that answered, but failed: 503s, resets) and replays are left (`extensions.replication.replay`). The
status processor that wrote the status to the ledger keeps it here and re-queues it when due, as
`crr-worker retry` would (a new generation, `replayCount` + 1). The ledger stays the truth: after a restart or
a rebalance each status processor rebuilds the waiting replays of the status partitions it owns from it, and a
replay is dropped when a newer status of the version (a manual retry, a later outcome) outranks it.
"""

from __future__ import annotations

import logging

from kafka.partitioner.default import murmur2

from crr_worker.entries import FAILED, EntryError, Standing, StatusEntry, key_digest, now_ms
from crr_worker.logs import log

LOG = logging.getLogger("crr_worker.replay")


class Replays:
    """FAILED statuses waiting for their replay, by ledger key digest."""

    def __init__(self):
        self.waiting: dict[bytes, StatusEntry] = {}

    def __len__(self) -> int:
        return len(self.waiting)

    def note(self, status: StatusEntry) -> None:
        """A status just written to the ledger: a FAILED one with a replay time waits; any other ends the wait."""
        digest = key_digest(status.ledger_key)
        if status.status == FAILED and status.replay_at:
            self.waiting[digest] = status
        else:
            self.waiting.pop(digest, None)

    def due(self, standings: dict[bytes, Standing], now: int | None = None) -> list[StatusEntry]:
        """The waiting statuses whose time has come and that are still the version's latest; they stop waiting."""
        now = now_ms() if now is None else now
        ready = [(d, s) for d, s in self.waiting.items() if s.replay_at <= now]
        for digest, _ in ready:
            del self.waiting[digest]
        return [s for digest, s in ready if standings.get(digest) == s.standing]

    def keep(self, found: dict[bytes, StatusEntry], owned: set[int], partitions: int) -> None:
        """Wait for the replays `found` in the ledger (collect_waiting) of the status partitions `owned` (of
        `partitions`), and only those."""
        self.waiting = {d: s for d, s in found.items()
                        if s.status == FAILED and s.replay_at and status_partition(s, partitions) in owned}
        if self.waiting:
            log(LOG, logging.INFO, "replays waiting", count=len(self.waiting))


def status_partition(status: StatusEntry, partitions: int) -> int:
    """The status topic partition of `status`: its message key hashed as the producer's partitioner does."""
    return (murmur2(status.entry.message_key) & 0x7FFFFFFF) % partitions


def collect_waiting(state: dict[bytes, StatusEntry], records: list[tuple[bytes, bytes | None]]) -> None:
    """The latest ledger status of each version that waits for a replay: any other status ends the wait."""
    for key, value in records:
        digest = key_digest(key)
        status = _parse(value) if value is not None else None
        if status is not None and status.status == FAILED and status.replay_at:
            state[digest] = status
        else:
            state.pop(digest, None)


def _parse(value: bytes) -> StatusEntry | None:
    try:
        return StatusEntry.from_kafka(value)
    except EntryError:
        return None  # the ledger's own readers log it
