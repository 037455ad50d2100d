"""`crr-worker api`: health, readiness, Prometheus metrics, failed list and retry, object status, pause/resume.

Standard-library HTTP (a ThreadingHTTPServer bounded to MAX_HANDLERS requests at once): the API is low traffic and
hosts need no web framework. The API's view of the ledger is kept by one follower thread that reads the
compacted ledger topic from its start and then follows it, so a request never re-reads the whole topic.
Retry and pause write to Kafka (replication/status topics, control topic) through one producer kept for the
API's lifetime; the processors, wherever they run, act on it. Binds 127.0.0.1 unless configured; with
`api.tokenFile` (its token read once, at start) every request needs `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from kafka import KafkaAdminClient, KafkaProducer

from crr_worker.config import ConfigError, WorkerConfig
from crr_worker.control import ControlWatch, set_paused
from crr_worker.entries import StatusEntry, now_ms
from crr_worker.kafka_io import ensure_topics, make_producer
from crr_worker.ledger import LedgerReader, apply_to_store
from crr_worker.logs import log
from crr_worker.metrics import (
    ReplicationMetrics,
    read_lag,
    render_lag,
    render_pending_age,
    render_pending_eta,
    render_scans,
    render_states,
)
from crr_worker.scan_report import ScanReport
from crr_worker.status import requeue
from crr_worker.store import StatusStore

LOG = logging.getLogger("crr_worker.api")
MAX_HANDLERS = 8
REQUEST_TIMEOUT_S = 15.0  # a slow client cannot hold a handler slot longer
MAX_BODY_BYTES = 64 * 1024
KAFKA_TIMEOUT_MS = 3000
FOLLOWER_RETRY_S = 2.0


@dataclass
class Reply:
    """What a route answers: HTTP status and a JSON-able body (or Prometheus text)."""

    status: int
    body: object
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if self.content_type.startswith("text/plain"):
            return str(self.body).encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


class ApiTopics:
    """The pipeline and control topics, ensured once for the API's lifetime by whichever needs them first
    (the follower before reading, a retry or pause before writing); after a failure the next one tries again."""

    def __init__(self, config: WorkerConfig):
        self.config = config
        self.lock = threading.Lock()
        self.ensured = False

    def ensure(self) -> None:
        with self.lock:
            if not self.ensured:
                ensure_topics(self.config)
                self.ensured = True


class LedgerFollower:
    """The ledger, the sites' pause states and the scan and resync reports as they are now, kept by one thread;
    readers query under its lock.
    The statuses are on disk (store.py), in a store rebuilt from the ledger at each start of the follower."""

    def __init__(self, config: WorkerConfig, topics: ApiTopics, metrics: ReplicationMetrics,
                 stop: threading.Event):
        self.config, self.topics, self.metrics, self.stop = config, topics, metrics, stop
        self.lock = threading.Lock()
        self.state = StatusStore(config.state_dir)
        self.paused: dict[str, bool] = {}
        self.scans: list[ScanReport] = []
        self.ready = threading.Event()  # set once the ledger was read to the end it had at start
        self.thread = threading.Thread(target=self._run, name="ledger-follower", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

    def tallies(self) -> tuple[Iterator[StatusEntry], list[StatusEntry]]:
        """StatusStore.tallies under the lock (the metrics' inputs, read in SQL: no status per version loaded)."""
        with self.lock:
            return self.state.tallies()

    def query(self, select, *arguments):
        """select(ledger, *arguments) on the ledger as it is now, under the lock: no copy of it per request."""
        with self.lock:
            return select(self.state, *arguments)

    def paused_sites(self) -> dict[str, bool]:
        with self.lock:
            return dict(self.paused)

    def scan_reports(self) -> list[ScanReport]:
        with self.lock:
            return list(self.scans)

    def _run(self) -> None:
        """Follow until stopped; after a Kafka error, start over from the ledger's beginning (metrics reset)."""
        while not self.stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - Kafka errors vary; the API keeps serving and retries
                log(LOG, logging.WARNING, "ledger follower restarting", error=str(exc))
                self.ready.clear()
                self.stop.wait(FOLLOWER_RETRY_S)

    def _follow(self) -> None:
        self.topics.ensure()
        reader = LedgerReader(self.config, self.stop)
        control = ControlWatch(self.config)
        try:
            control.load(self.stop)
            with self.lock:
                previous, self.state = self.state, StatusStore(self.config.state_dir)
            previous.close()
            self.metrics.reset()
            while not self.stop.is_set():
                records = reader.poll()
                with self.lock:
                    stored = apply_to_store(self.state, records)
                for status in stored:
                    self.metrics.observe(status)
                control.refresh()
                with self.lock:
                    self.paused = {site: control.paused(site) for site in (s.site for s in self.config.sites)}
                    self.scans = sorted(control.scans.values(), key=lambda report: (report.bucket, report.kind))
                if not self.ready.is_set() and reader.caught_up():
                    self.ready.set()
                    log(LOG, logging.INFO, "ledger loaded", versions=len(self.state))
        finally:
            control.close()
            reader.close()


class Api:
    """The routes' logic, independent of HTTP: each method takes parsed arguments and returns a Reply."""

    def __init__(self, config: WorkerConfig, topics: ApiTopics, follower: LedgerFollower,
                 metrics: ReplicationMetrics):
        self.config, self.topics, self.follower, self.metrics = config, topics, follower, metrics
        self.admin_lock = threading.Lock()  # one admin client, used by one request at a time
        self.admin = None
        self.producer_lock = threading.Lock()
        self.producer: KafkaProducer | None = None
        self.closed = False

    def close(self) -> None:
        """Release the Kafka clients; a request still running afterwards gets a 503, not a new producer."""
        with self.admin_lock:
            self._drop_admin()
        with self.producer_lock:
            self.closed = True
            if self.producer is not None:
                self.producer.close(timeout=5)
                self.producer = None

    def _writer(self) -> KafkaProducer:
        """The API's one producer for retries and pauses (thread-safe, so shared by requests), made on first
        use once the topics it writes to are ensured."""
        with self.producer_lock:
            if self.closed:
                raise RuntimeError("the API is stopping")
            if self.producer is None:
                self.topics.ensure()
                self.producer = make_producer(self.config)
            return self.producer

    def _with_admin(self, operation):
        """operation(admin) on the shared admin client; a failing client is dropped and rebuilt next time."""
        with self.admin_lock:
            try:
                if self.admin is None:
                    self.admin = KafkaAdminClient(bootstrap_servers=list(self.config.kafka.hosts),
                                                  client_id="crr-worker-api", request_timeout_ms=KAFKA_TIMEOUT_MS,
                                                  bootstrap_timeout_ms=KAFKA_TIMEOUT_MS)
                return operation(self.admin)
            except Exception:
                self._drop_admin()
                raise

    def _drop_admin(self) -> None:
        if self.admin is not None:
            try:
                self.admin.close()
            except Exception:  # noqa: BLE001 - closing a broken client may fail too; it is dropped anyway
                pass
            self.admin = None

    def kafka_error(self) -> str | None:
        """None when Kafka answers a metadata request in time; the error otherwise."""
        try:
            self._with_admin(lambda admin: admin.list_topics())
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means Kafka does not answer
            return "%s: %s" % (type(exc).__name__, exc)

    def healthcheck(self) -> Reply:
        error = self.kafka_error()
        if error:
            return Reply(503, {"status": "error", "kafka": error})
        return Reply(200, {"status": "ok", "kafka": "ok"})

    def ready(self) -> Reply:
        error = self.kafka_error()
        loaded = self.follower.ready.is_set()
        body = {"ready": loaded and not error, "ledger": "loaded" if loaded else "loading", "kafka": error or "ok"}
        return Reply(200 if body["ready"] else 503, body)

    def metrics_text(self) -> Reply:
        lines = self.metrics.render()
        try:
            lags, available = self._with_admin(lambda admin: read_lag(admin, self.config)), True
        except Exception as exc:  # noqa: BLE001 - metrics still serve what is known; crr_lag_available says 0
            log(LOG, logging.WARNING, "cannot read consumer lag", error=str(exc))
            lags, available = [], False
        lines += render_lag(lags, available)
        versions, oldest_pending = self.follower.tallies()
        pending = self.follower.query(StatusStore.pending_per_site)
        sites, paused = [s.site for s in self.config.sites], self.follower.paused_sites()
        ready = self.follower.ready.is_set()  # read after the counts: set then, they were of the whole ledger
        lines += render_states(versions, paused, sites, ready)
        lines += render_pending_age(oldest_pending, sites, time.time())
        lines += render_pending_eta(pending, self.metrics.outcome_rates(), paused, sites, ready)
        lines += render_scans(self.follower.scan_reports(), now_ms())
        return Reply(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4; charset=utf-8")

    def failed_list(self, query: dict) -> Reply:
        found = self._query(StatusStore.failed, query.get("site"), query.get("bucket"))
        return Reply(200, [s.to_dict() for s in found])

    def failed_retry(self, body: object) -> Reply:
        """Re-queue FAILED versions: `{"all": true}` or `{"bucket", ["key", ["versionId"]], ["site"]}`."""
        if not isinstance(body, dict):
            return Reply(400, {"error": "body must be a JSON object"})
        chosen = {name: body.get(name) for name in ("site", "bucket", "key", "versionId")}
        if any(v is not None and not isinstance(v, str) for v in chosen.values()):
            return Reply(400, {"error": "site, bucket, key and versionId must be strings"})
        if body.get("all") is not True and not chosen["bucket"]:
            return Reply(400, {"error": 'give {"all": true} or a bucket (with key and versionId to pick one)'})
        if chosen["site"]:
            self.config.site(chosen["site"])
        statuses = self._query(StatusStore.failed, chosen["site"], chosen["bucket"], chosen["key"], chosen["versionId"])
        count = requeue(self.config, self._writer(), statuses)
        log(LOG, logging.INFO, "re-queued failed versions", count=count, **{k: v for k, v in chosen.items() if v})
        return Reply(200, {"requeued": count})

    def object_status(self, bucket: str, key: str, query: dict) -> Reply:
        found = self._query(StatusStore.find, bucket, key, query.get("versionId"), query.get("site"))
        if not found:
            return Reply(404, {"error": "no version of %s/%s known to the ledger" % (bucket, key)})
        return Reply(200, [s.to_dict() for s in found])

    def pause(self, site: str, paused: bool) -> Reply:
        self.config.site(site)  # an unknown site is a 404, whether Kafka answers or not
        state = set_paused(self.config, self._writer(), site, paused)
        log(LOG, logging.INFO, "site paused" if paused else "site resumed", site=site)
        return Reply(200, {"site": state.site, "paused": state.paused, "updatedAt": state.updated_at})

    def _query(self, select, *arguments):
        """select(ledger, *arguments) on the follower's ledger; LedgerLoading until it is read to its end."""
        if not self.follower.ready.is_set():
            raise LedgerLoading()
        return self.follower.query(select, *arguments)


class LedgerLoading(Exception):
    """The ledger is not read to its end yet: answers would be incomplete."""


ROUTES = (
    ("GET", re.compile(r"^/_/healthcheck$"), lambda api, m, q, b: api.healthcheck()),
    ("GET", re.compile(r"^/_/ready$"), lambda api, m, q, b: api.ready()),
    ("GET", re.compile(r"^/metrics$"), lambda api, m, q, b: api.metrics_text()),
    ("GET", re.compile(r"^/_/crr/failed$"), lambda api, m, q, b: api.failed_list(q)),
    ("POST", re.compile(r"^/_/crr/failed$"), lambda api, m, q, b: api.failed_retry(b)),
    ("GET", re.compile(r"^/_/crr/status/([^/]+)/(.+)$"),
     lambda api, m, q, b: api.object_status(unquote(m.group(1)), unquote(m.group(2)), q)),
    ("POST", re.compile(r"^/_/crr/pause/([^/]+)$"), lambda api, m, q, b: api.pause(unquote(m.group(1)), True)),
    ("POST", re.compile(r"^/_/crr/resume/([^/]+)$"), lambda api, m, q, b: api.pause(unquote(m.group(1)), False)),
)


class ApiHandler(BaseHTTPRequestHandler):
    """One request: authorise, route, answer JSON, log one line (never the Authorization header)."""

    server: ApiServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "crr-worker-api"

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802 - http.server's naming
        self._handle("POST")

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature; requests are logged in _handle
        pass

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        reply = self._reply(method, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()})
        payload = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        if reply.status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(payload)
        log(LOG, logging.INFO, "request", method=method, path=parts.path, status=reply.status,
            duration_ms=round((time.monotonic() - started) * 1000, 1))

    def _reply(self, method: str, path: str, query: dict) -> Reply:
        if not self._authorized():
            return Reply(401, {"error": "a valid bearer token is required"})
        matched = [(m, route) for verb, pattern, route in ROUTES if (m := pattern.match(path)) and verb == method]
        if not matched:
            known = any(pattern.match(path) for _, pattern, _ in ROUTES)
            return Reply(405 if known else 404, {"error": "no route for %s %s" % (method, path)})
        match, route = matched[0]
        try:
            body = self._json_body() if method == "POST" else None
            return route(self.server.api, match, query, body)
        except BadRequest as exc:
            return Reply(400, {"error": str(exc)})
        except ConfigError as exc:
            return Reply(404, {"error": str(exc)})
        except LedgerLoading:
            return Reply(503, {"error": "the ledger is still loading; retry shortly"})
        except Exception as exc:  # noqa: BLE001 - one request fails, the server keeps serving
            log(LOG, logging.ERROR, "request failed", method=method, path=path, error="%s: %s" % (type(exc).__name__,
                                                                                                 exc))
            return Reply(503, {"error": "%s: %s" % (type(exc).__name__, exc)})

    def _authorized(self) -> bool:
        token = self.server.api.config.api.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode("utf-8"), ("Bearer %s" % token).encode("utf-8"))

    def _json_body(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest("body larger than %d bytes" % MAX_BODY_BYTES)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise BadRequest("body is not JSON: %s" % exc) from exc


class BadRequest(Exception):
    """The request itself is wrong (400)."""


class ApiServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that runs at most `slots` handlers: the accept loop waits for a free one."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: Api, slots: int = MAX_HANDLERS):
        self.api = api
        self.slots = threading.BoundedSemaphore(slots)
        super().__init__(address, ApiHandler)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(config: WorkerConfig, stop: threading.Event) -> None:
    """Serve until `stop` is set, then stop accepting, let running requests end, and stop following the ledger."""
    metrics, topics = ReplicationMetrics(), ApiTopics(config)
    follower = LedgerFollower(config, topics, metrics, stop)
    follower.start()
    api = Api(config, topics, follower, metrics)
    server = ApiServer((config.api.host, config.api.port), api)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="api-http")
    thread.start()
    log(LOG, logging.INFO, "api listening", host=config.api.host, port=server.server_address[1],
        token_required=config.api.token is not None)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(REQUEST_TIMEOUT_S)
        follower.join(10.0)
        api.close()
        log(LOG, logging.INFO, "api stopped")
