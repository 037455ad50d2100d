"""The `s3` source: any S3 endpoint; changes from S3 event notifications in SQS, versions from ListObjectVersions."""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from botocore.exceptions import ClientError

from crr_worker.aws import load_keys, make_client
from crr_worker.config import SourceConfig
from crr_worker.logs import log
from crr_worker.rules import BucketReplication, parse_replication
from crr_worker.s3_data import make_data_client
from crr_worker.sources.base import Change, ChangeBatch, SourceObject, VersionInfo

LOG = logging.getLogger("crr_worker.sources.s3")
CARRIED_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
                   "Expires")
SQS_MAX_BATCH = 10
# Messages handled together: up to 20 receives of 10, the later ones without waiting. A bigger batch under a
# backlog costs fewer listings per message: at 5 receives, moto's queue grew until every call slowed down
# (docs/performance.md, latency).
SQS_MAX_RECEIVES = 20
LIST_PAGE = 1000
# A bucket's listing starts with a page of this many: a scan's first entries go out without waiting for a page of
# 1,000 (moto takes about 0.5 ms per version listed, 0.65 s for such a page of a 2,000-object bucket).
FIRST_SCAN_PAGE = 100
LIST_POOL = 8  # per-key listings of one batch run at most this many at once
SHARED_LISTING_TRIES = 4  # shared listings (common prefix, one page) per batch before listing key by key
LISTING_ORDER = "crr_worker:ListingOrder"  # added to a ListObjectVersions page: its elements' kinds in order
VERSION, MARKER = "V", "D"
VERSION_DELETED = "ObjectRemoved:Delete"  # with a versionId: that version deleted (a marker's event is another)


class S3Source:
    """Reads versions, tags and replication rules from an S3 endpoint, and changes from an SQS queue."""

    def __init__(self, config: SourceConfig, default_site: str | None, pool: int = 16,
                 first_scan_page: int | None = FIRST_SCAN_PAGE):
        self.config = config
        self.default_site = default_site
        keys = load_keys(config.credentials, "extensions.replication.source.credentials")
        self.s3 = make_client("s3", config.endpoint, config.region, keys, pool, config.read_timeout_s)
        keep_listing_order(self.s3)
        self.data = make_data_client(config.endpoint, config.region, keys, pool, config.read_timeout_s)
        self.sqs = None
        self.list_pool: ThreadPoolExecutor | None = None
        self.first_scan_page = first_scan_page  # None: every page of a bucket's listing of 1,000
        if config.notification_queue_url:
            self.sqs = make_client("sqs", config.endpoint, config.region, keys, 2, config.read_timeout_s)

    def buckets(self) -> list[str]:
        if self.config.buckets:
            return list(self.config.buckets)
        return [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]

    def replication(self, bucket: str) -> BucketReplication | None:
        try:
            document = self.s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ReplicationConfigurationNotFoundError", "NoSuchBucket"):
                return None
            raise
        return parse_replication(bucket, document, self.default_site)

    def read_changes(self, stop: threading.Event, wait_s: float) -> ChangeBatch:
        """SQS messages turned into changes; checkpoint() deletes them from the queue.

        The first receive waits up to `wait_s`; while receives come back full, up to SQS_MAX_RECEIVES are taken
        without waiting, so that a backlog is handled in batches of up to 200 messages (their keys listed
        together where one page holds them, one Kafka flush).
        """
        if self.sqs is None or stop.is_set():
            stop.wait(wait_s)
            return ChangeBatch([])
        url = self.config.notification_queue_url
        messages: list[dict] = []
        wait = max(0, min(20, int(wait_s)))
        for _ in range(SQS_MAX_RECEIVES):
            reply = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=SQS_MAX_BATCH, WaitTimeSeconds=wait)
            received = reply.get("Messages", [])
            messages.extend(received)
            if len(received) < SQS_MAX_BATCH or stop.is_set():
                break
            wait = 0
        changes = [change for m in messages for change in parse_notification(m.get("Body", ""))]

        def checkpoint() -> None:
            for start in range(0, len(messages), SQS_MAX_BATCH):
                chunk = messages[start:start + SQS_MAX_BATCH]
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
                self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)

        return ChangeBatch(changes, checkpoint)

    def list_versions(self, bucket: str, key: str | None = None) -> Iterator[VersionInfo]:
        """Versions and delete markers, each key's oldest first (the listing gives them newest first).

        For one `key`, the listing under its prefix stops after the first page that lists a later key: the listing
        is sorted by key, so the rest (`key/...`, maybe millions of keys) holds none of its versions."""
        if key is None and self.first_scan_page:
            pages = self._bucket_pages(bucket, self.first_scan_page)
        else:
            prefix = {"Prefix": key} if key is not None else {}
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **prefix)
        current: list[VersionInfo] = []
        for page in pages:
            past_key = False
            for version in _page_versions(bucket, page):
                if key is not None and version.key != key:
                    past_key = past_key or version.key > key
                    continue
                if current and current[0].key != version.key:
                    yield from _oldest_first(current)
                    current = []
                current.append(version)
            if past_key:
                break
        yield from _oldest_first(current)

    def _bucket_pages(self, bucket: str, first_page: int) -> Iterator[dict]:
        """The bucket's ListObjectVersions pages: `first_page` versions, then pages of up to 1,000 from where it
        ended."""
        first = self.s3.list_object_versions(Bucket=bucket, MaxKeys=first_page)
        yield first
        if first.get("IsTruncated"):
            yield from self.s3.get_paginator("list_object_versions").paginate(
                Bucket=bucket, KeyMarker=first["NextKeyMarker"], VersionIdMarker=first.get("NextVersionIdMarker", ""))

    def list_keys_versions(self, bucket: str, keys: list[str]) -> dict[str, list[VersionInfo]]:
        """The versions of each of `keys`, oldest first.

        Keys are listed together where one page listing their common prefix holds all its versions: when that
        page is truncated, the keys are split by the next character after the prefix and each group tried
        alike, at most SHARED_LISTING_TRIES shared listings in all; what is left is listed key by key,
        LIST_POOL at a time.
        """
        found: dict[str, list[VersionInfo]] = {}
        alone: list[str] = []
        self._shared_listing(bucket, sorted(set(keys)), found, alone, [SHARED_LISTING_TRIES])
        if len(alone) == 1:
            found[alone[0]] = list(self.list_versions(bucket, alone[0]))
        elif alone:
            if self.list_pool is None:
                self.list_pool = ThreadPoolExecutor(LIST_POOL, thread_name_prefix="list-versions")
            found.update(zip(alone, self.list_pool.map(lambda key: list(self.list_versions(bucket, key)), alone)))
        return found

    def _shared_listing(self, bucket: str, keys: list[str], found: dict, alone: list[str], tries: list[int]) -> None:
        """Versions of sorted `keys` into `found` from one page listing their common prefix, else split."""
        if len(keys) < 2 or tries[0] <= 0:
            alone.extend(keys)
            return
        tries[0] -= 1
        prefix = os.path.commonprefix(keys)
        page = self.s3.list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=LIST_PAGE)
        if page.get("IsTruncated"):
            for _, group in itertools.groupby(keys, key=lambda key: key[:len(prefix) + 1]):
                self._shared_listing(bucket, list(group), found, alone, tries)
            return
        newest_first: dict[str, list[VersionInfo]] = {key: [] for key in keys}
        for version in _page_versions(bucket, page):
            if version.key in newest_first:
                newest_first[version.key].append(version)
        found.update((key, _oldest_first(versions)) for key, versions in newest_first.items())

    def open_version(self, bucket: str, key: str, version_id: str, byte_range: tuple[int, int] | None = None,
                     part_number: int | None = None) -> SourceObject:
        """One GET by the lean client (crr_worker.s3_data): the version's copy makes one per version."""
        reply = self.data.get_object(bucket, key, version_id, byte_range, part_number)
        headers = {name: reply[name] for name in CARRIED_HEADERS if reply.get(name)}
        return SourceObject(
            body=reply["Body"],
            size=int(reply.get("ContentLength") or 0),
            etag=reply.get("ETag", ""),
            headers=headers,
            metadata=dict(reply.get("Metadata") or {}),
            # S3 sends x-amz-tagging-count only when the version has tags
            tag_count=int(reply.get("TagCount") or 0),
            encryption=reply.get("ServerSideEncryption", ""),
        )

    def version_tags(self, bucket: str, key: str, version_id: str) -> dict[str, str]:
        reply = self.s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)
        return {t["Key"]: t["Value"] for t in reply.get("TagSet", [])}

    def take_over(self) -> None:
        """Nothing to forget: the SQS queue itself keeps what was not deleted."""

    def close(self) -> None:
        if self.list_pool is not None:
            self.list_pool.shutdown(wait=False, cancel_futures=True)
        self.data.close()


def parse_notification(body: str) -> list[Change]:
    """Changes named by one SQS message body: an S3 event (maybe wrapped by SNS); test events give none.

    Keys in S3 events are URL-encoded with '+' for spaces. The version id is kept as a hint only: the
    populator lists the key's versions anyway so that versions are enqueued in order whatever SQS delivers,
    unless the hinted version is already known (then that listing, or a later one, already enqueued it).
    """
    try:
        document = json.loads(body)
        if isinstance(document, dict) and "Message" in document and "Records" not in document:
            document = json.loads(document["Message"])  # SNS -> SQS fan-out
    except (TypeError, ValueError):
        log(LOG, logging.WARNING, "ignoring a notification that is not JSON", size=len(body or ""))
        return []
    changes = []
    for record in document.get("Records", []) if isinstance(document, dict) else []:
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name")
        raw_key = s3.get("object", {}).get("key")
        event = str(record.get("eventName", ""))
        if bucket and raw_key is not None and event.startswith("Object"):
            version_id = s3.get("object", {}).get("versionId") or None
            removed = event == VERSION_DELETED and version_id is not None
            changes.append(Change(bucket=bucket, key=unquote_plus(raw_key), version_id=version_id, removed=removed))
    return changes


def keep_listing_order(s3) -> None:
    """Make `s3`'s ListObjectVersions pages keep their elements' order, which version_pages needs."""
    s3.meta.events.register("after-call.s3.ListObjectVersions", _remember_listing_order)


def version_pages(s3, bucket: str, prefix: str = "") -> Iterator[list[VersionInfo]]:
    """Each ListObjectVersions page of `bucket` under `prefix`, as versions by key, each key newest first (a client
    made with keep_listing_order, for versions and markers of one second to keep their order)."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        yield _page_versions(bucket, page)


def _remember_listing_order(http_response, parsed: dict, **_) -> None:
    """Keep in a ListObjectVersions page the order of its Version and DeleteMarker elements, which botocore parses
    into two lists: S3 lists a key's versions and markers together, newest first, and that order is the only
    one left when a version and a marker share their Last-Modified second."""
    if not 200 <= getattr(http_response, "status_code", 0) < 300:
        return
    try:
        root = ElementTree.fromstring(http_response.content)
    except (ElementTree.ParseError, TypeError, ValueError):
        return
    kinds = {"Version": VERSION, "DeleteMarker": MARKER}
    parsed[LISTING_ORDER] = "".join(kinds[tag] for child in root if (tag := child.tag.rpartition("}")[2]) in kinds)


def _page_versions(bucket: str, page: dict) -> list[VersionInfo]:
    """Versions and delete markers of one listing page, in listing order (by key, newest first)."""
    versions, markers = page.get("Versions", []), page.get("DeleteMarkers", [])
    found = [VersionInfo(
        bucket=bucket, key=item["Key"], version_id=item.get("VersionId") or "null",
        size=int(item.get("Size") or 0), etag=item.get("ETag", ""),
        last_modified=item["LastModified"].isoformat() if item.get("LastModified") else "",
    ) for item in versions]
    found += [VersionInfo(
        bucket=bucket, key=item["Key"], version_id=item.get("VersionId") or "null", is_delete_marker=True,
        last_modified=item["LastModified"].isoformat() if item.get("LastModified") else "",
    ) for item in markers]
    items = versions + markers
    # The two lists come apart; merge by key (in the page's order), then newest first: the latest, then by time,
    # ties in the order the page listed them (versions first when the page does not say: a server listing all
    # versions, then all markers, as moto does, says nothing more).
    place = _listing_places(page.get(LISTING_ORDER), len(versions), len(markers))
    keys: dict[str, int] = {}
    for i in sorted(range(len(items)), key=place.__getitem__):
        keys.setdefault(items[i]["Key"], len(keys))
    order = sorted(range(len(items)), key=lambda i: (keys[items[i]["Key"]], not items[i].get("IsLatest"),
                                                     _negated_time(items[i]), place[i]))
    return [found[i] for i in order]


def _listing_places(kinds: str | None, versions: int, markers: int) -> list[int]:
    """Where each of a page's versions, then markers, stood among the page's elements (kinds: V or D, in order);
    their index in the two lists when the order is unknown."""
    if kinds is None or len(kinds) != versions + markers or kinds.count(VERSION) != versions:
        return list(range(versions + markers))
    place = [0] * (versions + markers)
    next_index = {VERSION: itertools.count(), MARKER: itertools.count(versions)}
    for position, kind in enumerate(kinds):
        place[next(next_index[kind])] = position
    return place


def _negated_time(item: dict) -> float:
    stamp = item.get("LastModified")
    return -stamp.timestamp() if stamp else 0.0


def _oldest_first(versions: list[VersionInfo]) -> list[VersionInfo]:
    return list(reversed(versions))
