"""The streamed single PUT's parts (crr_worker.targets.stream): which ETags stand for the body's MD5, and the
stream's checks on what the source gives, which the spool reads through too."""

from __future__ import annotations

import base64
import hashlib
import io
import threading

import pytest
from crr_worker.retry import RetryableError, Stopped
from crr_worker.targets.bandwidth import TokenBucket
from crr_worker.targets.spool import Spool
from crr_worker.targets.stream import SourceStream, etag_md5

BODY = b"x" * 3000
MD5_HEX = hashlib.md5(BODY).hexdigest()


def read_all(stream: SourceStream, block: int = 1024) -> bytes:
    chunks = []
    while chunk := stream.read(block):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("etag", [MD5_HEX, '"%s"' % MD5_HEX, MD5_HEX.upper()])
def test_a_single_put_s_etag_is_the_body_s_content_md5(etag):
    assert etag_md5(etag, "") == base64.b64encode(hashlib.md5(BODY).digest()).decode()
    assert etag_md5(etag, "AES256") is not None  # SSE-S3 keeps the MD5 as ETag


@pytest.mark.parametrize(("etag", "encryption"), [
    ('"%s-3"' % MD5_HEX, ""),  # a multipart upload's
    (MD5_HEX, "aws:kms"), (MD5_HEX, "aws:kms:dsse"),  # SSE-KMS: the ETag is not the MD5
    ("", ""), ("abc", ""), ("z" * 32, ""),
])
def test_other_etags_give_no_content_md5(etag, encryption):
    assert etag_md5(etag, encryption) is None


def test_the_stream_gives_the_body_in_chunks_no_larger_than_asked():
    stream = SourceStream(io.BytesIO(BODY), len(BODY), threading.Event())
    assert len(stream.read(1000)) == 1000 and read_all(stream) == BODY[1000:]


def test_a_short_or_long_source_stream_cuts_the_put_short():
    with pytest.raises(RetryableError, match="2999 bytes of 3000"):
        read_all(SourceStream(io.BytesIO(BODY[:-1]), len(BODY), threading.Event()))
    with pytest.raises(RetryableError, match="3000 bytes of 2999"):
        read_all(SourceStream(io.BytesIO(BODY), len(BODY) - 1, threading.Event()), block=4096)


def test_an_empty_body_is_an_empty_stream():
    assert read_all(SourceStream(io.BytesIO(b""), 0, threading.Event())) == b""


def test_the_stop_signal_stops_the_stream():
    stop = threading.Event()
    stream = SourceStream(io.BytesIO(BODY), len(BODY), stop)
    stream.read(10)
    stop.set()
    with pytest.raises(Stopped):
        stream.read(10)


def test_each_chunk_waits_for_its_bytes_from_the_site_s_bandwidth_limit():
    slept = []
    clock = [0.0]

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: clock[0], sleep=sleep)
    stream = SourceStream(io.BytesIO(BODY), len(BODY), threading.Event(), bucket)
    assert read_all(stream, block=4096) == BODY
    assert stream.chunk == 1000 and sum(slept) == pytest.approx(2.0)


class Closing(io.BytesIO):
    closed_by_reader = False

    def close(self):
        self.closed_by_reader = True
        super().close()


def test_the_spool_reads_through_the_stream_s_checks_and_closes_the_source_body():
    body = Closing(BODY)
    spool = Spool(body, len(BODY), memory_bytes=1024, stop=threading.Event(), sha256=True)
    with spool as (file, md5):
        assert file.read() == BODY and md5 == hashlib.md5(BODY).digest()
        assert spool.sha256_hex == hashlib.sha256(BODY).hexdigest()
    assert body.closed_by_reader
    short = Closing(BODY[:-1])
    with pytest.raises(RetryableError, match="2999 bytes of 3000"), Spool(short, len(BODY), 1024, threading.Event()):
        pass
    assert short.closed_by_reader
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped), Spool(io.BytesIO(BODY), len(BODY), 1024, stop):
        pass
