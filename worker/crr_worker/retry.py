"""Retries inside a site's budget: exponential backoff with jitter, and which errors deserve another try.

Retryable: throttling, 5xx, connection resets and timeouts. Everything else (403, NoSuchBucket, bad
credentials, ...) fails at once: trying again cannot help and would only delay the FAILED status. Among the
retryable ones, site errors (connections, timeouts, 503) may mean the whole site is down: given a SiteHold, such
an error is checked with a probe of the site, and an outage is waited out without counting against the version.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from requests.exceptions import ChunkedEncodingError
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout
from urllib3.exceptions import HTTPError as Urllib3Error

from crr_worker.backbeat_routes import BackbeatError
from crr_worker.config import RetryPolicy

if TYPE_CHECKING:
    from crr_worker.outage import SiteHold

T = TypeVar("T")

SITE_ERROR_CODES = frozenset({"SlowDown", "ServiceUnavailable", "503"})  # "503": a HEAD's error has no body
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "SlowDown",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
    "InternalError", "ServiceUnavailable", "OperationAborted", "BadDigest", "IncompleteBody",
})
NETWORK_ERRORS = (
    ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError,
    ResponseStreamingError, ConnectionError, TimeoutError, Urllib3Error,
    RequestsConnectionError, RequestsTimeout, ChunkedEncodingError,  # raw-HTTP clients (the /_/backbeat routes)
)


class Stopped(Exception):
    """The worker is stopping: the operation was abandoned, not failed; it will be redone."""


class ReplicationFailed(Exception):
    """A version that cannot be replicated: non-retryable, or the budget is spent. `reason` says why; `transient`
    when the last error may pass (the budget was spent on retryable errors), so a later replay may succeed."""

    def __init__(self, reason: str, tries: int = 1, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.tries = tries
        self.transient = transient


class RetryableError(Exception):
    """An error of our own making that deserves another try (e.g. a checksum mismatch while copying)."""


def is_retryable(exc: BaseException) -> bool:
    """Whether trying again may succeed."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, BackbeatError):
        return exc.retryable
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return error_code(exc) in RETRYABLE_CODES or status >= 500 or status in (408, 429)
    return isinstance(exc, NETWORK_ERRORS)


def is_site_error(exc: BaseException) -> bool:
    """Whether `exc` may mean the whole site is unreachable or overloaded (refused or reset connections, timeouts,
    DNS, 503 / SlowDown) rather than something wrong with one version."""
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status == 503 or error_code(exc) in SITE_ERROR_CODES
    if isinstance(exc, BackbeatError):
        return exc.status == 503 or exc.code in SITE_ERROR_CODES
    return isinstance(exc, NETWORK_ERRORS)


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ("NoSuchKey", "404" for a HEAD) or of a /_/backbeat route's error;
    "" for any other exception."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, BackbeatError):
        return exc.code
    return ""


def describe(exc: BaseException) -> str:
    """A one-line reason for the ledger: the S3 error code and message, or the exception text."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "")
        text = "%s: %s" % (error.get("Code", "?"), error.get("Message", "") or str(exc))
        return "%s (%s)" % (text, operation) if operation else text
    return "%s: %s" % (type(exc).__name__, exc)


# One generator for every call: creating a random.Random seeds it from os.urandom, 20 us per replicated version.
_JITTER = random.Random()


@dataclass
class Backoff:
    """Delays of successive retries: min * factor**n, capped at max, +/- jitter."""

    policy: RetryPolicy
    rng: random.Random

    def delay_s(self, attempt: int) -> float:
        backoff = self.policy.backoff
        base = min(backoff.max_ms, backoff.min_ms * backoff.factor ** attempt)
        spread = base * backoff.jitter
        return max(0.0, base + self.rng.uniform(-spread, spread)) / 1000.0


def call_with_retries(
    operation: Callable[[], T],
    policy: RetryPolicy,
    stop: threading.Event,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    hold: SiteHold | None = None,
    probe: Callable[[], None] | None = None,
) -> T:
    """operation()'s result, retried within the budget; ReplicationFailed, or Stopped once `stop` is set.

    With a `hold` and a `probe` of the site, no try starts while the site is held, and a site error is checked
    with the probe (SiteHold.wait_out): when the site was down, that try does not count and the time held is
    added to the budget's deadline; when it answered, the try counts like any retryable error.
    """
    backoff = Backoff(policy, rng or _JITTER)
    deadline = clock() + policy.timeout_s
    tries = 0
    while True:
        if stop.is_set():
            raise Stopped()
        if hold is not None:
            deadline += hold.wait_while_held(stop)
        try:
            return operation()
        except (ReplicationFailed, Stopped):
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_retryable(exc):
                raise ReplicationFailed(describe(exc), tries + 1) from exc
            if hold is not None and probe is not None and is_site_error(exc):
                held_s = hold.wait_out(exc, probe, stop)
                if held_s is not None:
                    deadline += held_s
                    continue  # the site was down: not the version's try
            delay = backoff.delay_s(tries)
            tries += 1
            if tries >= policy.max_retries or clock() + delay >= deadline:
                reason = "%s; gave up after %d tries" % (describe(exc), tries)
                raise ReplicationFailed(reason, tries, transient=True) from exc
            if on_retry:
                on_retry(tries, exc, delay)
            if stop.wait(delay):
                raise Stopped() from exc
