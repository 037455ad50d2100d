"""`crr-worker resync`: a bucket's versions queued again for the sites its replication sends them to.

An s3 source (resync_s3): every version, whatever the ledger says, as `mc replicate resync` does.

A CloudServer source's only feed is its metadata log, read from a checkpoint: versions written before the
populator first read it, or whose entries were lost, stay PENDING in their metadata for good, and FAILED ones
stay FAILED. resync lists the bucket's versions, reads each one's ObjectMD (`GET /_/backbeat/metadata` with the
listing's wire-form version id) and publishes, as new entries carrying that ObjectMD, those whose backend for a
served site is PENDING or FAILED (with `every`, `--all`: whatever their status), each followed by its PENDING
marks, as the populator publishes.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from crr_worker.aws import load_keys
from crr_worker.backbeat_routes import BackbeatClient
from crr_worker.config import ConfigError, WorkerConfig
from crr_worker.entries import FAILED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.kafka_io import ensure_topics, make_producer, send_all
from crr_worker.logs import log
from crr_worker.registry import make_source
from crr_worker.resync_progress import ControlReports, Counts, Progress, ResyncError, ResyncRefused, listing
from crr_worker.resync_s3 import resync_s3
from crr_worker.retry import ReplicationFailed, Stopped, call_with_retries
from crr_worker.sources.base import VersionInfo

LOG = logging.getLogger("crr_worker.resync")
BATCH = 500  # versions read, then published together (one flush of entries, one of PENDING marks)
METADATA_READERS = 8  # metadata reads in flight at once
WAITING = (PENDING, FAILED)
OLDER = "older than --since"  # what the reader answers for a version it does not read
CREDENTIALS_KEY = "extensions.replication.source.credentials"


def waiting_sites(metadata: dict, sites: frozenset[str], every: bool = False) -> tuple[str, ...]:
    """The sites among `sites` that the version still has to reach: its backends PENDING or FAILED (`every`:
    every backend, whatever its status)."""
    backends = (metadata.get("replicationInfo") or {}).get("backends") or []
    return tuple(b["site"] for b in backends if (every or b.get("status") in WAITING) and b.get("site") in sites)


def resync(config: WorkerConfig, bucket: str, site: str | None = None, since: datetime | None = None,
           stop: threading.Event | None = None, progress: Progress | None = None, every: bool = False) -> Counts:
    """Queue again the versions of `bucket` (last modified at or after `since`) for `site` (default: every site
    of the config): an s3 source's every version, a CloudServer source's waiting ones (`every`: all of those
    its metadata sends to a site); stops after the batch in hand when `stop` is set. Its progress is reported to
    the control topic too (ControlReports: the API's crr_scan_*{kind="resync"})."""
    if every and not config.cloudserver_source:
        raise ResyncRefused("--all is for a CloudServer source, whose resync otherwise takes only the versions its "
                            "metadata shows PENDING or FAILED: an s3 source's resync queues every version already")
    sites = frozenset(s.site for s in (config.sites if site is None else (config.site(site),)))
    stop, progress, counts = stop or threading.Event(), progress or Progress(), Counts()
    reports = ControlReports(config, bucket)
    progress.report = reports.send
    try:
        if config.cloudserver_source:
            _resync_cloudserver(config, bucket, sites, since, stop, progress, counts, every)
        else:
            resync_s3(config, bucket, sites, since, stop, progress, counts)
    finally:
        progress.end(counts)
        reports.close()
    progress.done(counts)
    log(LOG, logging.INFO, "resync done", bucket=bucket, listed=counts.listed, queued=counts.queued,
        gone=counts.gone, stopped=stop.is_set())
    return counts


def _resync_cloudserver(config: WorkerConfig, bucket: str, sites: frozenset[str], since: datetime | None,
                        stop: threading.Event, progress: Progress, counts: Counts, every: bool) -> None:
    """The versions whose ObjectMD shows a site of `sites` waiting (`every`: named at all), queued again."""
    keys = load_keys(config.source.credentials, CREDENTIALS_KEY)
    if not keys:
        raise ConfigError(CREDENTIALS_KEY, "resync reads metadata through /_/backbeat routes: set the file and "
                          "profile of the replication service account")
    ensure_topics(config)
    source = make_source(config, notifications=False)
    client = BackbeatClient(config.source.endpoint, config.source.region, keys, METADATA_READERS,
                            config.source.read_timeout_s)
    producer = make_producer(config)
    readers = ThreadPoolExecutor(METADATA_READERS, thread_name_prefix="resync-read")
    try:
        progress.start(counts)
        versions = listing(source, bucket)
        read = _reader(client, config, since, stop)
        while not stop.is_set() and (batch := list(itertools.islice(versions, BATCH))):
            entries = []
            for version, metadata in zip(batch, readers.map(read, batch)):
                counts.listed += 1
                entries += _entry(version, metadata, sites, counts, every)
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


def _entry(version: VersionInfo, metadata: dict | str | None, sites: frozenset[str], counts: Counts,
           every: bool) -> list[ReplicationEntry]:
    """The new entry of a version whose metadata shows a served site waiting, as a list of none or one."""
    if metadata is None:
        counts.gone += 1
        return []
    if metadata is OLDER:
        return []
    wanted = waiting_sites(metadata, sites, every)
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
