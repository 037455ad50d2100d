"""Source bodies spooled before they are written to a target: bounded memory, MD5 computed on the way.

A signed request over plain HTTP needs its payload's SHA-256 before it is sent (botocore reads the payload twice
for it; the lean client's PUT takes the one computed here), and a target wants the body's MD5 before it is
sent, so each body (or part) that is not streamed (crr_worker.targets.stream) is copied into a temporary file
that keeps at most `memory_bytes` in memory and the rest on disk. The site's bandwidth limit is applied here, chunk by
chunk, where the body is read from the source.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import threading

from crr_worker.targets.bandwidth import TokenBucket, Unlimited
from crr_worker.targets.stream import SourceStream


class Spool:
    """`with Spool(...) as (file, md5)`: the body copied into `file` (rewound), `md5` its digest (bytes).
    The body is read through a SourceStream: the stop signal, the site's bandwidth limit and the length read
    checked against `expected`, chunk by chunk. With `sha256`, the body's SHA-256 is computed on the way too
    (`sha256_hex`): what a PUT signed over plain http needs."""

    def __init__(self, body, expected: int, memory_bytes: int, stop, throttle: TokenBucket | Unlimited | None = None,
                 sha256: bool = False):
        self.stream = SourceStream(body, expected, stop, throttle)
        self.memory_bytes = memory_bytes
        self.file = None
        self.sha256 = hashlib.sha256() if sha256 else None
        self.sha256_hex: str | None = None

    def __enter__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=self.memory_bytes)
        digest = hashlib.md5(usedforsecurity=False)
        try:
            for chunk in iter(self.stream.read, b""):
                digest.update(chunk)
                if self.sha256 is not None:
                    self.sha256.update(chunk)
                self.file.write(chunk)
        finally:
            self.stream.close()
        self.file.seek(0)
        if self.sha256 is not None:
            self.sha256_hex = self.sha256.hexdigest()
        return self.file, digest.digest()

    def __exit__(self, *exc_info):
        self.file.close()
        return False


def base64_md5(md5: bytes) -> str:
    """Content-MD5 as S3 takes it (CloudServer's /_/backbeat/data takes the hex form instead)."""
    return base64.b64encode(md5).decode("ascii")


class AnyEvent:
    """Set when any of the events is set: the worker stops, or the object a part belongs to is given up."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)
