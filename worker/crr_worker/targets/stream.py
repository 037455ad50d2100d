"""A source body sent to the target as it is read, for a single PUT whose Content-MD5 is known before the body.

The source's ETag is the body's MD5 for a version written by one PUT (not for a multipart upload's, "<md5>-<parts>",
nor for an SSE-KMS object's). With it, nothing is spooled or hashed on the way: the PUT carries that MD5, signed,
and the target refuses a body that does not match it (BadDigest; the copy then goes through the spool, which
computes the MD5 of what it reads). Memory stays at one chunk whatever the size.
"""

from __future__ import annotations

import base64
import re

from crr_worker.retry import RetryableError, Stopped
from crr_worker.targets.bandwidth import TokenBucket, Unlimited

CHUNK = 1024 * 1024
MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}")


def etag_md5(etag: str, encryption: str) -> str | None:
    """The base64 Content-MD5 the source's ETag stands for; None when the ETag is not the body's MD5."""
    etag = etag.strip('"')
    if not MD5_ETAG.fullmatch(etag) or encryption.startswith("aws:kms"):
        return None
    return base64.b64encode(bytes.fromhex(etag)).decode("ascii")


class SourceStream:
    """The source body as a file for the PUT (or the spool, crr_worker.targets.spool) to read: the stop signal and
    the site's bandwidth limit between chunks, each read no larger than the limit's burst, and a RetryableError
    (the PUT cut short) when the source gives fewer or more than `expected` bytes."""

    def __init__(self, body, expected: int, stop, throttle: TokenBucket | Unlimited | None = None):
        self.body, self.expected, self.stop = body, expected, stop
        self.throttle = throttle or Unlimited()
        self.chunk = min(CHUNK, self.throttle.burst or CHUNK)
        self.sent = 0

    def read(self, amount: int | None = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped()
        wanted = self.chunk if amount is None or amount < 0 else min(amount, self.chunk)
        chunk = self.body.read(wanted)
        self.sent += len(chunk)
        if self.sent > self.expected or (not chunk and self.sent != self.expected):
            raise RetryableError("source stream gave %d bytes of %d" % (self.sent, self.expected))
        self.throttle.take(len(chunk), self.stop)
        return chunk

    def close(self) -> None:
        self.body.close()
