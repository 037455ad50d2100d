"""CloudServer's `/_/backbeat/*` routes over raw HTTP, signed with SigV4 like any S3 request.

boto3 has no operations for these routes, so requests are built here and signed by botocore's S3 signer.
Errors come back as JSON `{code, message}`; `BackbeatError.retryable` classifies them the way botocore
classifies S3 errors (5xx, throttling), and connection errors are retried by crr_worker.retry.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as SigningKeys

NOT_FOUND = frozenset({"ObjNotFound", "NoSuchKey", "NoSuchVersion"})
THROTTLING = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                        "InternalError"})


class BackbeatError(Exception):
    """A `/_/backbeat` route answered with an error."""

    def __init__(self, status: int, code: str, message: str, route: str):
        super().__init__("%s: %s (%s %d)" % (code or "HTTP %d" % status, message, route, status))
        self.status, self.code, self.message, self.route = status, code, message, route

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status in (408, 429) or self.code in THROTTLING

    @property
    def not_found(self) -> bool:
        """The version (or its key) does not exist; not any 404, which an endpoint without these routes gives."""
        return self.status == 404 and self.code in NOT_FOUND


@dataclass(frozen=True)
class Route:
    """One route call: what to sign and send."""

    method: str
    path: str
    query: dict
    body: bytes | BinaryIO = b""
    headers: dict | None = None


class BackbeatClient:
    """Calls one CloudServer's backbeat routes with one account's keys (`keys` as crr_worker.aws.load_keys).

    `endpoints` are the CloudServer's servers (a site's `servers`): requests go round robin, and a server that
    refuses the connection passes the request to the next one before the error counts as a failed try.
    """

    def __init__(self, endpoints: list[str] | str, region: str, keys: dict, pool: int, read_timeout_s: float):
        if not keys:
            raise ValueError("the /_/backbeat routes need explicit keys (a credentials file and profile)")
        self.endpoints = [e.rstrip("/") for e in ([endpoints] if isinstance(endpoints, str) else endpoints)]
        self.next_endpoint = itertools.cycle(range(len(self.endpoints)))
        self.lock = threading.Lock()
        self.region = region
        self.keys = SigningKeys(keys["aws_access_key_id"], keys["aws_secret_access_key"],
                                keys.get("aws_session_token"))
        self.timeout = (5, read_timeout_s)
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=len(self.endpoints), pool_maxsize=pool,
                                                max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def get_metadata(self, bucket: str, key: str, version_id: str) -> dict | None:
        """The version's ObjectMD; None when the version (or its key) no longer exists."""
        try:
            reply = self.call(Route("GET", _path("metadata", bucket, key), {"versionId": version_id}))
        except BackbeatError as exc:
            if exc.not_found:
                return None
            raise
        return json.loads(reply.json()["Body"])

    def put_metadata(self, bucket: str, key: str, version_id: str, metadata: dict,
                     headers: dict | None = None) -> dict:
        """Write the version's whole ObjectMD; CloudServer answers with the internal version id."""
        body = json.dumps(metadata).encode("utf-8")
        route = Route("PUT", _path("metadata", bucket, key), {"versionId": version_id}, body, headers)
        return self.call(route).json()

    def put_data(self, bucket: str, key: str, body: BinaryIO, length: int, md5_hex: str,
                 canonical_id: str) -> list[dict]:
        """Store one part's bytes for an object of the account `canonical_id`; its data locations (no metadata
        is written: an object exists only once put_metadata names them)."""
        headers = {"x-scal-canonical-id": canonical_id, "content-md5": md5_hex, "content-length": str(length)}
        return self.call(Route("PUT", _path("data", bucket, key), {"v2": ""}, body, headers)).json()

    def batch_delete(self, locations: list[dict]) -> None:
        """Delete stored data locations that no metadata names (the parts of a copy given up)."""
        body = json.dumps({"Locations": locations}).encode("utf-8")
        self.call(Route("POST", "/_/backbeat/batchdelete", {}, body, {"content-type": "application/json"}))

    def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        """An S3 DELETE of one version (not a backbeat route): it removes the version, a delete marker too."""
        path = "/%s/%s" % (quote(bucket, safe=""), quote(key, safe="/~"))
        self.call(Route("DELETE", path, {"versionId": version_id}))

    def call(self, route: Route) -> requests.Response:
        """Send one signed request; BackbeatError when CloudServer answers with an error."""
        for attempt in range(len(self.endpoints)):
            with self.lock:
                endpoint = self.endpoints[next(self.next_endpoint)]
            if hasattr(route.body, "seek"):
                route.body.seek(0)
            try:
                reply = self._send(endpoint, route)
            except requests.ConnectionError:
                if attempt + 1 == len(self.endpoints):
                    raise
                continue  # refused or reset before an answer: the next server takes it
            if reply.status_code >= 300:
                raise _error(reply, "%s %s" % (route.method, route.path))
            return reply
        raise AssertionError("unreachable: no endpoints")

    def _send(self, endpoint: str, route: Route) -> requests.Response:
        url = endpoint + route.path + _query_string(route.query)
        request = AWSRequest(method=route.method, url=url, data=route.body, headers=dict(route.headers or {}))
        S3SigV4Auth(self.keys, "s3", self.region).add_auth(request)
        if hasattr(route.body, "seek"):
            route.body.seek(0)  # hashing the payload for the signature read it
        return self.session.request(route.method, url, data=route.body or None, headers=dict(request.headers),
                                    timeout=self.timeout)

    def close(self) -> None:
        self.session.close()


def _query_string(query: dict) -> str:
    """`?a=1&v2`: a parameter with an empty value is sent as a bare flag, as CloudServer's routes write it."""
    if not query:
        return ""
    return "?" + "&".join(quote(k, safe="") + ("=" + quote(v, safe="") if v != "" else "") for k, v in query.items())


def _path(route: str, bucket: str, key: str) -> str:
    """`/_/backbeat/<route>/<bucket>/<key>`, the key percent-encoded as S3 does it ('/' kept)."""
    return "/_/backbeat/%s/%s/%s" % (route, quote(bucket, safe=""), quote(key, safe="/~"))


def _error(reply: requests.Response, route: str) -> BackbeatError:
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return BackbeatError(reply.status_code, str(body.get("code", "")), str(body.get("message", reply.reason)), route)
