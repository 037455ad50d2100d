"""The worker's configuration: one Backbeat-shaped JSON file, parsed and validated once into typed objects.

Every error names the offending key (dotted path) so an operator can fix the file without reading code.
A key no parser reads is refused rather than ignored: a misspelt key would otherwise leave its default in force.
Nothing else in the worker reads the JSON; components receive these dataclasses.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
DEFAULT_RETRY_BUDGETS = {"aws_s3": (5, 900), "scality": (5, 300)}
SITE_TYPES = ("aws_s3", "scality")
LOG_SOURCES = ("s3", "dmd", "bucketd")  # dmd, bucketd: a CloudServer source (Backbeat's names for its feeds)
START_FROM = ("oldest", "end")
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MIB

# Keys real Backbeat configs carry (tests/fixtures/backbeat/config.json, Backbeat's conf/config.json) that this
# worker has no use for, by place ("[]": any list index). Accepted so a Backbeat config can be copied over,
# never read. Listed by name, not by wildcard, so a misspelling of a key the worker reads is still refused.
BACKBEAT_IGNORED = {
    "": {"zookeeper", "metrics", "server", "certFilePaths"},  # no ZooKeeper, own metrics and API (`api`), no TLS
    "queuePopulator": {"cronRule", "zookeeperPath", "probeServer"},  # scanIntervalS / pollIntervalS pace it
    "extensions.replication": {"replicationFailedTopic", "monitorReplicationFailures",
                               "monitorReplicationFailureExpiryTimeS", "replayTopics"},  # failures: the ledger
    "extensions.replication.source": {"transport", "s3", "auth"},  # here: endpoint and credentials
    "extensions.replication.destination": {"transport", "auth"},  # here: per site
    "extensions.replication.destination.bootstrapList[]": {"echo"},
    # retryTimeoutS, mpuPartsConcurrency: this worker's are retry.timeoutS and partConcurrency
    "extensions.replication.queueProcessor": {"retryTimeoutS", "mpuPartsConcurrency", "logConsumerMetricsIntervalS",
                                              "probeServer"},
    "extensions.replication.replicationStatusProcessor": {"retryTimeoutS", "concurrency",
                                                          "logConsumerMetricsIntervalS", "probeServer"},
    "log": {"dumpLevel"},
}


class ConfigError(Exception):
    """An invalid configuration; `key` is the dotted path of the culprit."""

    def __init__(self, key: str, message: str):
        super().__init__("%s: %s" % (key, message))
        self.key = key


@dataclass(frozen=True)
class Credentials:
    """Where to read S3 keys: a shared-credentials INI file and profile, or the default boto3 chain.

    A profile without a file reads AWS_SHARED_CREDENTIALS_FILE (the role's units set it) or ~/.aws/credentials.
    """

    file: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff in milliseconds, Backbeat's field names."""

    min_ms: int = 1000
    max_ms: int = 300_000
    jitter: float = 0.1
    factor: float = 1.5


@dataclass(frozen=True)
class RetryPolicy:
    """The retry budget of one site: at most `max_retries` tries and `timeout_s` seconds per version."""

    max_retries: int
    timeout_s: float
    backoff: Backoff


@dataclass(frozen=True)
class ReplayPolicy:
    """Automatic replays of a version FAILED for a reason that may pass (its retry budget spent on retryable
    errors): at most `retries` times, the n-th (from 0) `delay_s` × 2^n seconds after the failure, at most an hour;
    as Backbeat's replay topics do. `retries` 0: never (`crr-worker retry` only)."""

    retries: int = 3
    delay_s: float = 60.0

    def delay_ms(self, replay_count: int) -> int:
        return int(min(3600.0, self.delay_s * 2 ** replay_count) * 1000)


@dataclass(frozen=True)
class SourceConfig:
    endpoint: str | None
    region: str
    credentials: Credentials
    buckets: tuple[str, ...]
    discovery: bool
    notification_queue_url: str | None
    scan_interval_s: float
    read_timeout_s: float


@dataclass(frozen=True)
class RecordLogConfig:
    """Where a CloudServer source's change feed is read (`queuePopulator.dmd` or `queuePopulator.bucketd`).

    dmd: the file metadata daemon's record log `log_name`, over REST; bucketd: the logs of `raft_sessions`.
    `start_from` applies when no checkpoint exists yet: the oldest record still in the log, or its end.
    """

    host: str
    port: int
    https: bool = False
    log_name: str = "s3-recordlog"
    raft_sessions: tuple[int, ...] = ()
    batch_max_read: int = 500
    poll_interval_s: float = 1.0
    start_from: str = "oldest"
    read_timeout_s: float = 30.0

    @property
    def url(self) -> str:
        return "%s://%s:%d" % ("https" if self.https else "http", self.host, self.port)


@dataclass(frozen=True)
class SiteConfig:
    """One replication site of `destination.bootstrapList`."""

    site: str
    type: str
    retry: RetryPolicy
    endpoint: str | None = None
    region: str = "us-east-1"
    bucket: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    servers: tuple[str, ...] = ()
    default: bool = False
    read_timeout_s: float = 30.0
    bucket_match: bool = True  # False: keys are stored under `<source bucket>/` in the site's bucket (CloudServer's)
    https: bool = False  # a scality site's servers are reached over HTTPS
    canonical_id: str | None = None  # a scality site: the canonical id of the account replicas belong to
    display_name: str | None = None  # ... and its display name
    bandwidth_limit: int | None = None  # bytes/s of bodies read for this site by one processor; None: unlimited
    replicate_version_deletes: bool = False  # a version deleted from the source (by its id) is deleted here too


@dataclass(frozen=True)
class QueueProcessorConfig:
    concurrency: int
    part_concurrency: int
    mpu_threshold: int
    mpu_part_size: int
    group_id_prefix: str
    spool_memory_bytes: int
    retry: RetryPolicy

    def group_id(self, site: str) -> str:
        """The consumer group of a site's processors (the API reads its lag under the same name)."""
        return "%s-%s" % (self.group_id_prefix, site)


@dataclass(frozen=True)
class KafkaConfig:
    hosts: tuple[str, ...]
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class ApiConfig:
    """Where the API listens, and the bearer token read from `api.tokenFile` at start (never in a repr or log)."""

    host: str = "127.0.0.1"
    port: int = 8900
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None


@dataclass(frozen=True)
class WorkerConfig:
    kafka: KafkaConfig
    log_source: str
    source: SourceConfig
    record_log: RecordLogConfig | None  # set for a CloudServer source (log_source dmd or bucketd)
    sites: tuple[SiteConfig, ...]
    topic: str
    status_topic: str
    ledger_topic: str
    status_group_id: str
    queue_processor: QueueProcessorConfig
    api: ApiConfig
    log_level: str
    replay: ReplayPolicy = ReplayPolicy()
    state_dir: str | None = None  # `stateDir`: where the on-disk caches of the ledger go (None: the temp dir)

    @property
    def cloudserver_source(self) -> bool:
        """Whether the source is a CloudServer (its metadata carries the replication decision and the status)."""
        return self.record_log is not None

    def find_site(self, name: str) -> SiteConfig | None:
        """The site called `name`, or None when it is not in the bootstrapList."""
        return next((site for site in self.sites if site.site == name), None)

    def site(self, name: str) -> SiteConfig:
        """The site called `name`; ConfigError when it is not in the bootstrapList."""
        found = self.find_site(name)
        if found is None:
            raise ConfigError("extensions.replication.destination.bootstrapList", "no site named %r" % name)
        return found

    def default_site(self) -> SiteConfig | None:
        """The site used when a rule names no storage class: the one marked default, or the only one."""
        marked = [s for s in self.sites if s.default]
        if marked:
            return marked[0]
        return self.sites[0] if len(self.sites) == 1 else None


class _Section:
    """A JSON object with its dotted path, so every lookup error can name its key.

    Every name asked for (present or not) is recorded in `seen`, by path, shared by all sections of one parse:
    a key of the document never asked for is unknown (`_refuse_unknown_keys`).
    """

    def __init__(self, data: Any, path: str, seen: dict | None = None):
        if not isinstance(data, dict):
            raise ConfigError(path or "<root>", "must be an object")
        self.data = data
        self.path = path
        self.seen = {} if seen is None else seen
        self.asked = self.seen.setdefault(path, (data, set()))[1]

    def key(self, name: str) -> str:
        return "%s.%s" % (self.path, name) if self.path else name

    def accept(self, *names: str) -> None:
        """Known here but not read in this configuration (e.g. the feed of the other logSource)."""
        self.asked.update(names)

    def section(self, name: str, required: bool = False) -> _Section:
        self.asked.add(name)
        if name not in self.data:
            if required:
                self._missing(name)
            return _Section({}, self.key(name), self.seen)
        return _Section(self.data[name], self.key(name), self.seen)

    def entries(self, name: str, required: bool = False) -> list[_Section]:
        """The objects of the list `name`, each named `name[i]`."""
        items = self.get(name, list, [], required)
        return [_Section(item, "%s[%d]" % (self.key(name), i), self.seen) for i, item in enumerate(items)]

    def get(self, name: str, kind: type | tuple, default: Any = None, required: bool = False) -> Any:
        self.asked.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                self._missing(name)
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.key(name), "must be %s, not a boolean" % _kind_name(kinds))
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kinds):
            raise ConfigError(self.key(name), "must be %s, got %s" % (_kind_name(kinds), type(value).__name__))
        return value

    def _missing(self, name: str):
        """A required key is absent: point at a present key that looks like a misspelling of it."""
        close = difflib.get_close_matches(name, list(self.data), 1)
        raise ConfigError(self.key(name), "is required" + (" (is %r a misspelling?)" % close[0] if close else ""))

    def number(self, name: str, default: float, minimum: float, maximum: float | None = None) -> float:
        return self._bounded(name, self.get(name, (int, float), default), minimum, maximum)

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        return self._bounded(name, self.get(name, int, default), minimum, maximum)

    def _bounded(self, name: str, value, minimum, maximum):
        if value < minimum or (maximum is not None and value > maximum):
            bounds = ">= %s" % minimum if maximum is None else "between %s and %s" % (minimum, maximum)
            raise ConfigError(self.key(name), "must be %s, got %s" % (bounds, value))
        return value

    def text(self, name: str, default: str | None = None, required: bool = False,
             choices: tuple[str, ...] | None = None) -> str | None:
        value = self.get(name, str, default, required)
        if value is not None and not value.strip():
            raise ConfigError(self.key(name), "must not be empty")
        if choices and value is not None and value not in choices:
            raise ConfigError(self.key(name), "must be one of %s, got %r" % (", ".join(choices), value))
        return value


def _kind_name(kinds: tuple) -> str:
    if set(kinds) == {int, float}:
        return "a number"
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
             dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: str) -> WorkerConfig:
    """The validated configuration in the JSON file at `path`; ConfigError naming the key otherwise."""
    try:
        with open(path, encoding="utf-8") as src:
            data = json.load(src)
    except OSError as exc:
        raise ConfigError("<file>", "cannot read %s: %s" % (path, exc.strerror)) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("<file>", "%s is not valid JSON: %s" % (path, exc)) from exc
    return parse_config(data)


def parse_config(data: Any) -> WorkerConfig:
    """The validated configuration held in `data` (the decoded JSON document); unknown keys are refused."""
    root = _Section(data, "")
    config = _worker_config(root)
    _refuse_unknown_keys(root.seen)
    return config


def _refuse_unknown_keys(seen: dict) -> None:
    """ConfigError for the first key no parser asked for and not a known Backbeat key ignored at its place."""
    for path, (data, asked) in seen.items():
        ignored = BACKBEAT_IGNORED.get(re.sub(r"\[\d+\]", "[]", path), set())
        for name in data:
            if name not in asked and name not in ignored:
                key = "%s.%s" % (path, name) if path else name
                close = difflib.get_close_matches(name, sorted(asked | ignored), 1)
                fix = "did you mean %r?" % close[0] if close else "valid keys: %s" % ", ".join(sorted(asked))
                raise ConfigError(key, "unknown key; " + fix)


def _worker_config(root: _Section) -> WorkerConfig:
    replication = root.section("extensions", required=True).section("replication", required=True)
    queue_processor = _queue_processor(replication.section("queueProcessor"))
    populator = root.section("queuePopulator")
    topic = replication.text("topic", "backbeat-replication")
    status_topic = replication.text("replicationStatusTopic", "backbeat-replication-status")
    ledger_topic = replication.text("ledgerTopic", "backbeat-replication-ledger")
    if len({topic, status_topic, ledger_topic}) != 3:
        raise ConfigError(replication.key("ledgerTopic"), "topic, replicationStatusTopic and ledgerTopic must differ")
    status_section = replication.section("replicationStatusProcessor")
    retry_data = replication.section("queueProcessor").section("retry").data
    explicit = {k: retry_data[k] for k in ("maxRetries", "timeoutS") if k in retry_data}
    log_source = populator.text("logSource", "s3", choices=LOG_SOURCES)
    record_log = _record_log(populator, log_source)
    return WorkerConfig(
        kafka=_kafka(root.section("kafka", required=True)),
        log_source=log_source,
        source=_source(replication.section("source", required=True), populator, log_source),
        record_log=record_log,
        sites=_sites(replication.section("destination", required=True), queue_processor.retry, explicit),
        topic=topic,
        status_topic=status_topic,
        ledger_topic=ledger_topic,
        status_group_id=status_section.text("groupId", "backbeat-replication-status-group"),
        queue_processor=queue_processor,
        api=_api(root.section("api")),
        replay=_replay(replication.section("replay")),
        log_level=root.section("log").text("logLevel", "info", choices=("debug", "info", "warning", "error")),
        state_dir=root.text("stateDir"),
    )


def _kafka(section: _Section) -> KafkaConfig:
    hosts = section.get("hosts", (str, list), required=True)
    items = [h.strip() for h in hosts.split(",")] if isinstance(hosts, str) else hosts
    for item in items:
        if not isinstance(item, str) or ":" not in item or not item.rsplit(":", 1)[1].isdigit():
            raise ConfigError(section.key("hosts"), "each broker must be host:port, got %r" % (item,))
    if not items:
        raise ConfigError(section.key("hosts"), "must name at least one broker")
    return KafkaConfig(
        hosts=tuple(items),
        partitions=section.integer("partitions", 8, 1, 10_000),
        replication_factor=section.integer("replicationFactor", 1, 1, 16),
    )


def _credentials(section: _Section) -> Credentials:
    path = section.text("file")
    if path is not None:
        _check_credentials_file(path, section.key("file"))
    return Credentials(file=path, profile=section.text("profile"))


def _check_credentials_file(path: str, key: str) -> None:
    """Refuse a credentials file others can read: it holds secret keys."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(key, "cannot read %s: %s" % (path, exc.strerror)) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(key, "%s must not be accessible by group or others (chmod 0600)" % path)


def _endpoint(section: _Section, name: str = "endpoint") -> str | None:
    value = section.text(name)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ConfigError(section.key(name), "must be an http:// or https:// URL, got %r" % value)
    return value


def _record_log(populator: _Section, log_source: str) -> RecordLogConfig | None:
    """The CloudServer feed's settings for logSource dmd or bucketd; None for an s3 source."""
    # Known whatever the logSource (Backbeat's configs carry both feeds), read only for the feed selected.
    populator.accept("dmd", "bucketd", "batchMaxRead", "pollIntervalS", "startFrom")
    if log_source == "s3":
        return None
    feed = populator.section(log_source, required=True)
    sessions = ()
    if log_source == "bucketd":
        sessions = feed.get("raftSessions", list, required=True)
        if not sessions or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sessions):
            raise ConfigError(feed.key("raftSessions"), "must list raft session ids (integers), e.g. [1, 2]")
    return RecordLogConfig(
        host=feed.text("host", required=True),
        port=feed.integer("port", 9993 if log_source == "dmd" else 9000, 1, 65535),  # dmd: its REST port
        https=feed.get("https", bool, False),
        log_name=feed.text("logName", "s3-recordlog"),
        raft_sessions=tuple(sessions),
        batch_max_read=populator.integer("batchMaxRead", 500, 1, 10_000),
        poll_interval_s=populator.number("pollIntervalS", 1.0, 0.05),
        start_from=populator.text("startFrom", "oldest", choices=START_FROM),
        read_timeout_s=feed.number("readTimeoutS", 30.0, 1.0),
    )


def _source(section: _Section, populator: _Section, log_source: str) -> SourceConfig:
    """An s3 source must be told its buckets (a CloudServer source's log names them), and a CloudServer source
    (dmd, bucketd) its endpoint: without one boto3 would read from AWS."""
    cloudserver = log_source != "s3"
    buckets = section.get("buckets", list, [])
    for index, name in enumerate(buckets):
        if not isinstance(name, str) or not name:
            raise ConfigError("%s[%d]" % (section.key("buckets"), index), "must be a bucket name")
    discovery = section.get("discovery", bool, False)
    if not cloudserver and not buckets and not discovery:
        raise ConfigError(section.key("buckets"), "list the source buckets or set discovery: true")
    endpoint = _endpoint(section)
    if cloudserver and endpoint is None:
        raise ConfigError(section.key("endpoint"), "is required for a CloudServer source (logSource %s): %s"
                          % (log_source, _cloudserver_endpoint_hint(section.data)))
    return SourceConfig(
        endpoint=endpoint,
        region=section.text("region", "us-east-1"),
        credentials=_credentials(section.section("credentials")),
        buckets=tuple(buckets),
        discovery=discovery,
        notification_queue_url=_endpoint(section, "notificationQueueUrl"),
        scan_interval_s=populator.number("scanIntervalS", 300.0, 1.0),
        read_timeout_s=section.number("readTimeoutS", 30.0, 1.0),
    )


def _cloudserver_endpoint_hint(source: dict) -> str:
    """The URL to set, from Backbeat's `s3: {host, port}` and `transport` when given (not read otherwise)."""
    s3 = source.get("s3")
    if isinstance(s3, dict) and "host" in s3 and "port" in s3:
        scheme = "https" if source.get("transport") == "https" else "http"
        return "its S3 URL, %s://%s:%s from Backbeat's s3 and transport, which are not read" % (
            scheme, s3["host"], s3["port"])
    return "its S3 URL, e.g. http://cloudserver:8000"


def _sites(section: _Section, retry: RetryPolicy, explicit: dict) -> tuple[SiteConfig, ...]:
    entries = section.entries("bootstrapList", required=True)
    if not entries:
        raise ConfigError(section.key("bootstrapList"), "must name at least one site")
    sites = [_site(entry, retry, explicit) for entry in entries]
    names = [s.site for s in sites]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError("%s[%d].site" % (section.key("bootstrapList"), index), "duplicate site %r" % name)
    if sum(s.default for s in sites) > 1:
        raise ConfigError(section.key("bootstrapList"), "at most one site may be default")
    return tuple(sites)


def _site_endpoint(section: _Section) -> str | None:
    """`endpoint` (a URL), or CloudServer's location names `awsEndpoint` (host[:port]) with `https`.

    All three are read whichever applies: crr_endpoint writes `https` on every aws_s3 entry and keeps an
    `endpoint` written by hand next to the `awsEndpoint` it writes."""
    endpoint = _endpoint(section)
    host = section.text("awsEndpoint")
    https = section.get("https", bool, True)
    if endpoint is not None or host is None:
        return endpoint
    if host.startswith(("http://", "https://")):
        return host
    return "%s://%s" % ("https" if https else "http", host)


def _site_credentials(section: _Section) -> Credentials:
    """`credentials: {file, profile}`, or `credentialsProfile` (what crr_endpoint writes) read from the
    service's credentials file. Keys written inline in the config are refused: the config is group-readable."""
    given = section.data.get("credentials")
    if isinstance(given, dict) and ("accessKey" in given or "secretKey" in given):
        raise ConfigError(section.key("credentials"), "keys inline in the config are not read (the file is "
                          "group-readable): put them in the 0600 credentials file and set credentialsProfile")
    profile = section.text("credentialsProfile")
    credentials = _credentials(section.section("credentials"))
    if profile is None:
        return credentials
    if credentials != Credentials():
        raise ConfigError(section.key("credentials"), "give credentials or credentialsProfile, not both")
    return Credentials(profile=profile)


def _site(section: _Section, retry: RetryPolicy, explicit: dict) -> SiteConfig:
    """A bootstrapList entry: `{"site", "servers"}` (scality) or `{"site", "type": "aws_s3", ...}`."""
    name = section.text("site", required=True)
    if "/" in name:  # the control topic keys a site's state by its name, and scan reports by <kind>/<bucket>
        raise ConfigError(section.key("site"), "a site name cannot contain '/', got %r" % name)
    servers = section.get("servers", list, [])
    kind = section.text("type", "scality" if servers else None, choices=SITE_TYPES)
    if kind is None:
        raise ConfigError(section.key("type"), "is required when no servers are given (aws_s3 or scality)")
    if kind == "scality" and not servers:
        raise ConfigError(section.key("servers"), "a scality site needs servers: [host:port, ...]")
    tries, timeout = DEFAULT_RETRY_BUDGETS[kind]
    # queueProcessor.retry sets the budget of every site when given; otherwise the site type's default applies.
    base = RetryPolicy(explicit.get("maxRetries", tries), explicit.get("timeoutS", timeout), retry.backoff)
    own_retry = _retry(section.section("retry"), base)
    # pathStyle (crr_endpoint writes it for CloudServer's location) is checked but not used: the worker always
    # addresses buckets path-style (aws.make_client), which AWS and S3-compatible servers both accept.
    section.get("pathStyle", bool)
    return SiteConfig(
        site=name,
        type=kind,
        retry=own_retry,
        endpoint=_site_endpoint(section),
        region=section.text("region", "us-east-1"),
        bucket=section.text("bucket") or section.text("bucketName"),
        credentials=_site_credentials(section),
        servers=tuple(str(s) for s in servers),
        default=section.get("default", bool, False),
        read_timeout_s=section.number("readTimeoutS", 30.0, 1.0),
        bucket_match=section.get("bucketMatch", bool, True),
        https=section.get("https", bool, kind != "scality"),
        canonical_id=section.text("canonicalId"),
        display_name=section.text("displayName"),
        bandwidth_limit=_bandwidth_limit(section),
        replicate_version_deletes=section.get("replicateVersionDeletes", bool, False),
    )


def _replay(section: _Section) -> ReplayPolicy:
    return ReplayPolicy(retries=section.integer("retries", ReplayPolicy.retries, 0, 100),
                        delay_s=section.number("delayS", ReplayPolicy.delay_s, 0.0, 3600.0))


BANDWIDTH_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
                   "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
BANDWIDTH_FORMAT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _bandwidth_limit(section: _Section) -> int | None:
    """`bandwidthLimit`: bytes per second, an integer or a string with a unit ("50MiB", "800KB")."""
    value = section.get("bandwidthLimit", (int, str))
    if value is None:
        return None
    how = ("must be a number of bytes per second > 0, e.g. 52428800 or \"50MiB\" (units: B, KB, MB, GB, KiB, MiB, "
           "GiB), got %r" % (value,))
    match = BANDWIDTH_FORMAT.match(value) if isinstance(value, str) else None
    if isinstance(value, str) and (match is None or match.group(2).lower() not in BANDWIDTH_UNITS):
        raise ConfigError(section.key("bandwidthLimit"), how)
    limit = int(float(match.group(1)) * BANDWIDTH_UNITS[match.group(2).lower()]) if match else value
    if limit <= 0:
        raise ConfigError(section.key("bandwidthLimit"), how)
    return limit


def _retry(section: _Section, defaults: RetryPolicy) -> RetryPolicy:
    backoff = section.section("backoff")
    base = defaults.backoff
    min_ms = backoff.integer("min", base.min_ms, 0)
    max_ms = backoff.integer("max", base.max_ms, 0)
    if max_ms < min_ms:
        raise ConfigError(backoff.key("max"), "must be >= %s (backoff.min)" % min_ms)
    return RetryPolicy(
        max_retries=section.integer("maxRetries", defaults.max_retries, 1, 1000),
        timeout_s=section.number("timeoutS", defaults.timeout_s, 1.0),
        backoff=Backoff(
            min_ms=min_ms,
            max_ms=max_ms,
            jitter=backoff.number("jitter", base.jitter, 0.0, 1.0),
            factor=backoff.number("factor", base.factor, 1.0),
        ),
    )


def _queue_processor(section: _Section) -> QueueProcessorConfig:
    threshold = section.integer("mpuThreshold", 128 * MIB, MIN_PART_SIZE)  # AWS suggests multipart from ~100 MB
    part_size = section.integer("mpuPartSize", 16 * MIB, MIN_PART_SIZE, 5 * 1024 * MIB)
    return QueueProcessorConfig(
        concurrency=section.integer("concurrency", 8, 1, 256),
        part_concurrency=section.integer("partConcurrency", 4, 1, 64),
        mpu_threshold=threshold,
        mpu_part_size=part_size,
        group_id_prefix=section.text("groupId", "backbeat-replication-group"),
        spool_memory_bytes=section.integer("spoolMemoryBytes", 8 * MIB, 0),
        retry=_retry(section.section("retry"), RetryPolicy(5, 900, Backoff())),
    )


def _api(section: _Section) -> ApiConfig:
    _refuse_inline_token(section)
    token_file = section.text("tokenFile")
    return ApiConfig(
        host=section.text("host", "127.0.0.1"),
        port=section.integer("port", 8900, 1, 65535),
        token=None if token_file is None else _read_token(token_file, section.key("tokenFile")),
        token_file=token_file,
    )


def _refuse_inline_token(section: _Section) -> None:
    """An inline `api.token` is refused like inline S3 keys: the config file is group-readable."""
    if "token" in section.data:
        raise ConfigError(section.key("token"), "a token inline in the config is not read (the file is "
                          "group-readable): put it alone in a 0600 file and set api.tokenFile to its path")


def _read_token(path: str, key: str) -> str:
    """The token held in the file at `path`, which only its owner may read (as credentials files)."""
    try:
        if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(key, "%s must not be accessible by group or others: chmod 600 %s" % (path, path))
        with open(path, encoding="utf-8") as src:
            token = src.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, "cannot read %s: %s" % (path, getattr(exc, "strerror", None) or exc)) from exc
    if not token:
        raise ConfigError(key, "%s is empty: write the API's bearer token in it" % path)
    return token


def part_size_for(size: int, preferred: int) -> int:
    """The part size to use for an object of `size` bytes: `preferred`, grown to stay within 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    return max(preferred, needed, MIN_PART_SIZE)
