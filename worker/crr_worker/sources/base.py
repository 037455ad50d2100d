"""What the populator and the processors need from a source; the s3 and cloudserver sources implement it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Protocol

from crr_worker.entries import ReplicationEntry
from crr_worker.rules import BucketReplication


@dataclass(frozen=True)
class VersionInfo:
    """One version (object or delete marker) as a listing or a change record describes it."""

    bucket: str
    key: str
    version_id: str
    is_delete_marker: bool = False
    size: int = 0
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Change:
    """Something changed under `bucket`/`key`; `version` is set when the feed says exactly which version.

    `version_id` is a hint only (an S3 event's versionId): the key's versions are still listed, so that they are
    enqueued in order whatever order the feed delivers; a hint already known lets the populator skip the listing.
    `entry` is set by a source that decides itself what to replicate (CloudServer): it is published as is.
    `removed` says the feed reports version `version_id` deleted by its id (crr_worker.version_deletes).
    """

    bucket: str
    key: str
    version: VersionInfo | None = None
    version_id: str | None = None
    entry: ReplicationEntry | None = None
    removed: bool = False


@dataclass
class ChangeBatch:
    """Changes read from the feed; `checkpoint()` acknowledges them, to be called only after they are published."""

    changes: list[Change]
    checkpoint: Callable[[], None] = field(default=lambda: None)


@dataclass
class SourceObject:
    """An open source version: a byte stream plus what the replica must carry."""

    body: BinaryIO
    size: int
    etag: str
    headers: dict
    metadata: dict
    tag_count: int | None = None  # None: unknown, ask version_tags(); 0: the version has no tags
    encryption: str = ""  # the source's server-side encryption (x-amz-server-side-encryption), if it says


class Source(Protocol):
    def buckets(self) -> list[str]:
        """Source buckets to replicate from (configured or discovered)."""

    def replication(self, bucket: str) -> BucketReplication | None:
        """The bucket's replication configuration; None when it has none."""

    def read_changes(self, stop: threading.Event, wait_s: float) -> ChangeBatch:
        """The next changes of the feed, waiting at most `wait_s` (empty batch when there are none)."""

    def list_versions(self, bucket: str, key: str | None = None) -> Iterator[VersionInfo]:
        """Every version of the bucket (or of exactly `key`), each key's versions oldest first."""

    def list_keys_versions(self, bucket: str, keys: list[str]) -> dict[str, list[VersionInfo]]:
        """The versions of each of `keys` (oldest first), as list_versions(bucket, key) gives them."""

    def open_version(self, bucket: str, key: str, version_id: str, byte_range: tuple[int, int] | None = None,
                     part_number: int | None = None) -> SourceObject:
        """A stream of the version (or of bytes [start, end] of it, or of one part of a multipart object); a
        version id never changes content."""

    def version_tags(self, bucket: str, key: str, version_id: str) -> dict[str, str]:
        """The version's tags."""

    def take_over(self) -> None:
        """This populator just became the active one: positions kept in memory may be behind the checkpoints."""

    def close(self) -> None:
        """Release threads and connections."""
