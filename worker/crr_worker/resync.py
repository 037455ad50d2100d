"""`crr-worker resync`: a CloudServer bucket's versions that still wait for a site, queued again.

A CloudServer source's only feed is its metadata log, read from a checkpoint: versions written before the
populator first read it, or whose entries were lost, stay PENDING in their metadata for good, and FAILED ones
stay FAILED. resync lists the bucket's versions, reads each one's ObjectMD (`GET /_/backbeat/metadata` with the
listing's wire-form version id) and publishes, as new entries carrying that ObjectMD, those whose backend for a
served site is PENDING or FAILED, each followed by its PENDING marks, as the populator publishes.

An s3 source is refused: it has no ObjectMD to tell what waits, its populator's scan already queues every version
the ledger does not know, and `crr-worker retry` re-queues the FAILED ones.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from botocore.exceptions import ClientError

from crr_worker.aws import load_keys
from crr_worker.backbeat_routes import BackbeatClient
from crr_worker.config import ConfigError, WorkerConfig
from crr_worker.entries import FAILED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.kafka_io import ensure_topics, make_producer, send_all
from crr_worker.logs import log
from crr_worker.registry import make_source
from crr_worker.retry import ReplicationFailed, Stopped, call_with_retries, describe
from crr_worker.sources.base import VersionInfo

LOG = logging.getLogger("crr_worker.resync")
BATCH = 500  # versions read, then published together (one flush of entries, one of PENDING marks)
METADATA_READERS = 8  # metadata reads in flight at once
WAITING = (PENDING, FAILED)
OLDER = "older than --since"  # what the reader answers for a version it does not read
CREDENTIALS_KEY = "extensions.replication.source.credentials"


class ResyncError(Exception):
    """The resync cannot go on: the message says what failed."""


class ResyncRefused(ResyncError):
    """The config's source is not one resync can read (a usage error, not a failure)."""


@dataclass
class Counts:
    listed: int = 0
    queued: int = 0
    gone: int = 0  # deleted between the listing and the metadata read


def waiting_sites(metadata: dict, sites: frozenset[str]) -> tuple[str, ...]:
    """The sites among `sites` that the version still has to reach: its backends PENDING or FAILED."""
    backends = (metadata.get("replicationInfo") or {}).get("backends") or []
    return tuple(b["site"] for b in backends if b.get("status") in WAITING and b.get("site") in sites)


def resync(config: WorkerConfig, bucket: str, site: str | None = None, since: datetime | None = None,
           stop: threading.Event | None = None, progress: Progress | None = None) -> Counts:
    """Queue again the versions of `bucket` (last modified at or after `since`) waiting for `site` (default:
    every site of the config); stops after the batch in hand when `stop` is set."""
    if not config.cloudserver_source:
        raise ResyncRefused("resync needs a CloudServer source (queuePopulator.logSource dmd or bucketd): an s3 "
                            "source's populator scan already queues every version the ledger does not know, and "
                            "`crr-worker retry` the FAILED ones")
    sites = frozenset(s.site for s in (config.sites if site is None else (config.site(site),)))
    keys = load_keys(config.source.credentials, CREDENTIALS_KEY)
    if not keys:
        raise ConfigError(CREDENTIALS_KEY, "resync reads metadata through /_/backbeat routes: set the file and "
                          "profile of the replication service account")
    stop, progress, counts = stop or threading.Event(), progress or Progress(), Counts()
    ensure_topics(config)
    source = make_source(config, notifications=False)
    client = BackbeatClient(config.source.endpoint, config.source.region, keys, METADATA_READERS,
                            config.source.read_timeout_s)
    producer = make_producer(config)
    readers = ThreadPoolExecutor(METADATA_READERS, thread_name_prefix="resync-read")
    try:
        versions = _listing(source, bucket)
        read = _reader(client, config, since, stop)
        while not stop.is_set() and (batch := list(itertools.islice(versions, BATCH))):
            entries = []
            for version, metadata in zip(batch, readers.map(read, batch)):
                counts.listed += 1
                entries += _entry(version, metadata, sites, counts)
                progress.update(counts)
            _publish(config, producer, entries)
            counts.queued += len(entries)
    except Stopped:
        pass  # the batch in hand is not published: a run again queues it
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        producer.close(timeout=10)
        client.close()
        source.close()
    progress.done(counts)
    log(LOG, logging.INFO, "resync done", bucket=bucket, listed=counts.listed, queued=counts.queued,
        gone=counts.gone, stopped=stop.is_set())
    return counts


def _listing(source, bucket: str) -> Iterator[VersionInfo]:
    """The bucket's versions, each key's oldest first; ResyncError when the bucket cannot be listed."""
    try:
        yield from source.list_versions(bucket)
    except ClientError as exc:
        raise ResyncError("cannot list the versions of bucket %s: %s" % (bucket, describe(exc))) from exc


def _reader(client: BackbeatClient, config: WorkerConfig, since: datetime | None, stop: threading.Event):
    """A version's ObjectMD (None once deleted, OLDER when last modified before `since`), retried within the
    queue processor's budget."""
    def read(version: VersionInfo) -> dict | str | None:
        if since is not None and version.last_modified and datetime.fromisoformat(version.last_modified) < since:
            return OLDER
        try:
            return call_with_retries(lambda: client.get_metadata(version.bucket, version.key, version.version_id),
                                     config.queue_processor.retry, stop)
        except ReplicationFailed as exc:
            raise ResyncError("cannot read the metadata of %s/%s version %s: %s"
                              % (version.bucket, version.key, version.version_id, exc.reason)) from exc
    return read


def _entry(version: VersionInfo, metadata: dict | str | None, sites: frozenset[str],
           counts: Counts) -> list[ReplicationEntry]:
    """The new entry of a version whose metadata shows a served site waiting, as a list of none or one."""
    if metadata is None:
        counts.gone += 1
        return []
    if metadata is OLDER:
        return []
    wanted = waiting_sites(metadata, sites)
    if not wanted:
        return []
    return [ReplicationEntry.from_object_md(version.bucket, version.key, json.dumps(metadata), wanted)]


def _publish(config: WorkerConfig, producer, entries: list[ReplicationEntry]) -> None:
    """Entries first (acknowledged), then their PENDING marks, as the populator and `retry` publish."""
    if not entries:
        return
    send_all(producer, config.topic, [e.to_kafka() for e in entries])
    marks = [StatusEntry(e, site, PENDING) for e in entries for site in e.sites]
    send_all(producer, config.status_topic, [m.to_kafka() for m in marks])


class Progress:
    """`listed N, queued M, X versions/s`: redrawn in place on a terminal at most every 0.5 s, otherwise logged
    every 10 s (a journal would keep every redraw)."""

    def __init__(self, stream: TextIO | None = None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = 0.5 if self.tty else 10.0
        self.clock = clock
        self.started = self.shown = clock()
        self.width = 0

    def update(self, counts: Counts) -> None:
        now = self.clock()
        if now - self.shown >= self.every_s:
            self.shown = now
            self._show(counts, now)

    def done(self, counts: Counts) -> None:
        """The last state; on a terminal the line is ended so that the summary starts on its own."""
        if self.tty:
            self._show(counts, self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, counts: Counts, now: float) -> None:
        rate = counts.listed / max(now - self.started, 1e-6)
        if not self.tty:
            log(LOG, logging.INFO, "resync progress", listed=counts.listed, queued=counts.queued,
                versions_per_s=round(rate, 1))
            return
        line = "listed %d, queued %d, %.0f versions/s" % (counts.listed, counts.queued, rate)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)
