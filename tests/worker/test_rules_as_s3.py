"""A key's versions and delete markers, listed by ListObjectVersions in two lists, merged back in the order S3
listed them."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse
from crr_worker.config import parse_config
from crr_worker.sources.s3 import S3Source

# --- a key's versions and markers in the order S3 listed them ------------------------------------------------------

SAME_SECOND = "2026-01-01T00:00:00.000Z"
OWNER = "<Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>"


def _version(key: str, version_id: str, latest: bool) -> str:
    return ('<Version><Key>%s</Key><VersionId>%s</VersionId><IsLatest>%s</IsLatest><LastModified>%s</LastModified>'
            '<ETag>&quot;%s&quot;</ETag><Size>2</Size>%s<StorageClass>STANDARD</StorageClass></Version>'
            % (key, version_id, str(latest).lower(), SAME_SECOND, "0" * 32, OWNER))


def _marker(key: str, version_id: str, latest: bool) -> str:
    return ('<DeleteMarker>%s<Key>%s</Key><VersionId>%s</VersionId><IsLatest>%s</IsLatest>'
            '<LastModified>%s</LastModified></DeleteMarker>' % (OWNER, key, version_id, str(latest).lower(),
                                                                SAME_SECOND))


# ListObjectVersions as S3 answers it (the shape of its API reference example): one list, by key, each key's
# versions and delete markers together, newest first. True order of k: v1, dm, v2; of l: l1, ldm, all in one second.
SAME_SECOND_PAGE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    '<Name>src</Name><Prefix></Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>'
    '<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>'
    + _version("k", "v2", True) + _marker("k", "dm", False) + _version("k", "v1", False)
    + _marker("l", "ldm", True) + _version("l", "l1", False)
    + "</ListVersionsResult>"
).encode()


class _Body:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def _source_answering(page: bytes, monkeypatch) -> S3Source:
    """The s3 source, its client answering every ListObjectVersions with `page` (parsed by botocore as always)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = parse_config({"kafka": {"hosts": "127.0.0.1:9"}, "extensions": {"replication": {
        "source": {"endpoint": "http://127.0.0.1:9", "buckets": ["src"]},
        "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    source = S3Source(config.source, "aws1")
    source.s3.meta.events.register("before-send.s3.ListObjectVersions",
                                   lambda request, **_: AWSResponse(request.url, 200, {}, _Body(page)))
    return source


@pytest.mark.parametrize("listing", ["one key", "a batch's keys together"])
def test_a_version_and_a_delete_marker_of_the_same_second_keep_the_order_s3_listed_them_in(listing, monkeypatch):
    source = _source_answering(SAME_SECOND_PAGE, monkeypatch)
    if listing == "one key":
        found = {key: list(source.list_versions("src", key)) for key in ("k", "l")}
    else:
        found = source.list_keys_versions("src", ["k", "l"])
    assert {key: [v.version_id for v in listed] for key, listed in found.items()} == {
        "k": ["v1", "dm", "v2"], "l": ["l1", "ldm"]}
    assert [v.is_delete_marker for v in found["k"]] == [False, True, False]
