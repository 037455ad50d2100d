"""Retries inside a site's budget: exponential backoff with jitter, and which errors deserve another try.

Retryable: throttling, 5xx, connection resets and timeouts. Everything else (403, NoSuchBucket, bad
credentials, ...) fails at once: trying again cannot help and would only delay the FAILED status.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

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

T = TypeVar("T")

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
    """A version that cannot be replicated: non-retryable, or the budget is spent. `reason` says why."""

    def __init__(self, reason: str, tries: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.tries = tries


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
) -> T:
    """operation()'s result, retried within the budget; ReplicationFailed or Stopped otherwise."""
    backoff = Backoff(policy, rng or random.Random())
    deadline = clock() + policy.timeout_s
    for attempt in range(policy.max_retries):
        if stop.is_set():
            raise Stopped()
        try:
            return operation()
        except (ReplicationFailed, Stopped):
            raise
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_retryable(exc):
                raise ReplicationFailed(describe(exc), attempt + 1) from exc
            tries_left = attempt + 1 < policy.max_retries
            delay = backoff.delay_s(attempt)
            if not tries_left or clock() + delay >= deadline:
                reason = "%s; gave up after %d tries" % (describe(exc), attempt + 1)
                raise ReplicationFailed(reason, attempt + 1) from exc
            if on_retry:
                on_retry(attempt + 1, exc, delay)
            if stop.wait(delay):
                raise Stopped() from exc
    raise ReplicationFailed("no tries allowed", 0)
