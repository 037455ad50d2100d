"""A lean S3 client for the three calls a version's copy makes: GetObject, HeadObject and PutObject.

Why: botocore spends ~2.5 ms CPU per call (models, events, parsing), several times the request itself; these calls
are made once per replicated version, everything else stays with boto3 (crr_worker.aws). Requests are signed here
(SigV4, path-style, the derived key kept per day) and sent over a urllib3 pool. Replies come back shaped as
botocore's (same field names), and errors as botocore's ClientError (Error.Code/Message, ResponseMetadata), so that
the callers and crr_worker.retry classify them as before; urllib3's own errors are network errors there too.
"""

from __future__ import annotations

import calendar
import datetime
import hashlib
import hmac
import http.client
import time
from email.utils import formatdate
from urllib.parse import quote
from xml.etree import ElementTree

import botocore.session
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.httpsession import ProxyConfiguration, get_cert_path
from botocore.utils import get_environ_proxies, parse_timestamp

from crr_worker import __version__

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # GET and HEAD: what botocore signs for an empty body
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"  # a PUT whose Content-MD5 is signed and whose body is not hashed here
CONNECT_TIMEOUT_S = 5
ERROR_BODY_MAX = 64 * 1024
SEND_BLOCK = 64 * 1024
META_PREFIX = "x-amz-meta-"
USER_AGENT = "crr-worker/%s (lean s3)" % __version__
# reply header -> botocore field, for the headers a replica carries (PutObject takes the same names)
CARRIED = (("content-type", "ContentType"), ("cache-control", "CacheControl"),
           ("content-disposition", "ContentDisposition"), ("content-encoding", "ContentEncoding"),
           ("content-language", "ContentLanguage"))
PUT_HEADERS = {field: header for header, field in CARRIED} | {"Tagging": "x-amz-tagging"}


class Signer:
    """SigV4 for S3 (the path is signed as sent, not normalised); the day's derived key is kept between calls."""

    def __init__(self, credentials, region: str, service: str = "s3"):
        self.credentials, self.region, self.service = credentials, region, service
        self._key: tuple[tuple[str, str], bytes] | None = None  # ((secret, day), key): one day's key

    def sign(self, method: str, host: str, path: str, query: str, headers: dict, payload_hash: str,
             now: float | None = None) -> dict:
        """`headers` plus Host, X-Amz-Date, X-Amz-Content-SHA256, the token if any, and Authorization; `query`
        is canonical already (canonical_query)."""
        if self.credentials is None:
            raise NoCredentialsError()
        frozen = self.credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        signed = dict(headers, host=host)
        signed["x-amz-date"] = stamp
        signed["x-amz-content-sha256"] = payload_hash
        if frozen.token:
            signed["x-amz-security-token"] = frozen.token
        names = sorted(signed, key=str.lower)
        canonical_headers = "".join("%s:%s\n" % (n.lower(), " ".join(str(signed[n]).split())) for n in names)
        signed_names = ";".join(n.lower() for n in names)
        canonical = "\n".join((method, path, query, canonical_headers, signed_names, payload_hash))
        scope = "%s/%s/%s/aws4_request" % (stamp[:8], self.region, self.service)
        to_sign = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        signature = hmac.new(self._day_key(frozen.secret_key, stamp[:8]), to_sign.encode(), "sha256").hexdigest()
        signed["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            frozen.access_key, scope, signed_names, signature)
        return signed

    def _day_key(self, secret: str, day: str) -> bytes:
        cached = self._key
        if cached is not None and cached[0] == (secret, day):
            return cached[1]
        key = ("AWS4" + secret).encode()
        for part in (day, self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), "sha256").digest()
        self._key = ((secret, day), key)
        return key


def object_path(prefix: str, bucket: str, key: str) -> str:
    """The path-style path of an object, encoded as S3 signs it: every byte but unreserved ones and '/' of the
    key (a space is %20, '+' is %2B), once."""
    return "%s/%s/%s" % (prefix, quote(bucket, safe=""), quote(key, safe="/~"))


def canonical_query(params: dict) -> str:
    """The query string, sorted and encoded as SigV4 wants it; sent as is."""
    pairs = sorted((quote(str(k), safe="-_.~"), quote(str(v), safe="-_.~")) for k, v in params.items())
    return "&".join("%s=%s" % pair for pair in pairs)


def object_fields(headers) -> dict:
    """The fields botocore's GetObject / HeadObject reply holds, from the reply's headers (those callers use)."""
    fields = {field: headers[name] for name, field in CARRIED if headers.get(name)}
    expires = headers.get("expires")
    if expires:
        try:
            fields["Expires"] = parse_timestamp(expires)
        except (ValueError, RuntimeError):
            pass  # botocore drops an Expires it cannot parse too
    fields["Metadata"] = {name[len(META_PREFIX):]: value for name, value in headers.items()
                          if name.lower().startswith(META_PREFIX)}
    fields["ContentLength"] = int(headers.get("content-length") or 0)
    for name, field in (("etag", "ETag"), ("x-amz-version-id", "VersionId"), ("last-modified", "LastModified"),
                        ("x-amz-server-side-encryption", "ServerSideEncryption")):
        if headers.get(name):
            fields[field] = headers[name]
    if headers.get("x-amz-tagging-count"):
        fields["TagCount"] = int(headers["x-amz-tagging-count"])
    if headers.get("x-amz-delete-marker") == "true":
        fields["DeleteMarker"] = True
    return fields


def put_headers(length: int, md5_b64: str, arguments: dict) -> dict:
    """PutObject's headers from the keyword arguments botocore's put_object takes (crr_worker.targets.aws_s3)."""
    headers = {"Content-Length": str(length), "Content-MD5": md5_b64}
    for field, value in arguments.items():
        if field == "Metadata":
            headers.update((META_PREFIX + name, str(v)) for name, v in value.items())
        elif field == "Expires":
            headers["Expires"] = _http_date(value)
        elif field in PUT_HEADERS:
            headers[PUT_HEADERS[field]] = str(value)
        else:
            raise TypeError("put_object: unexpected argument %s" % field)
    return headers


def _http_date(value) -> str:
    if isinstance(value, datetime.datetime):
        return formatdate(calendar.timegm(value.utctimetuple()), usegmt=True)
    return str(value)


def client_error(status: int, headers, body: bytes, operation: str) -> ClientError:
    """botocore's ClientError for an S3 error reply: Code and Message from the XML body, else (a HEAD) the status
    as Code and its reason as Message, as botocore gives them."""
    error = {"Code": str(status), "Message": http.client.responses.get(status, "")}
    if body:
        try:
            root = ElementTree.fromstring(body)
            error.update((child.tag.rpartition("}")[2], child.text or "") for child in root)
        except ElementTree.ParseError:
            pass
    lowered = {name.lower(): value for name, value in headers.items()}
    metadata = {"HTTPStatusCode": status, "HTTPHeaders": lowered, "RetryAttempts": 0,
                "RequestId": lowered.get("x-amz-request-id", ""), "HostId": lowered.get("x-amz-id-2", "")}
    return ClientError({"Error": error, "ResponseMetadata": metadata}, operation)


class Body:
    """A GET's body, read in chunks from the connection; close() gives the connection back (or drops it when
    unread bytes are left on it)."""

    def __init__(self, response):
        self.response = response
        self.done = False

    def read(self, amount: int | None = None) -> bytes:
        data = self.response.read(amount)
        if not data and amount != 0:
            self.done = True
        return data

    def close(self) -> None:
        if not self.done and self.response.length_remaining != 0:
            self.response.close()  # unread bytes: the connection cannot carry another request
        self.response.release_conn()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


class S3Data:
    """GetObject, HeadObject and PutObject on one endpoint, over a pool of `pool` connections."""

    def __init__(self, endpoint_url: str, region: str, credentials, pool: int, read_timeout: float,
                 ca_bundle: str | None = None, proxy: str | None = None):
        url = urllib3.util.parse_url(endpoint_url)
        self.https = url.scheme == "https"
        self.prefix = (url.path or "").rstrip("/")
        default_port = 443 if self.https else 80
        self.host = url.host if url.port in (None, default_port) else "%s:%d" % (url.host, url.port)
        self.signer = Signer(credentials, region)
        options = dict(maxsize=pool, block=False, retries=False, blocksize=SEND_BLOCK,
                       timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout))
        if self.https:
            options.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_bundle or get_cert_path(True))
        # through an http proxy, a plain-http request names the whole URL; https goes through a tunnel
        self.origin = "%s://%s" % (url.scheme, self.host) if proxy and not self.https else ""
        self.pool = _pool(url, proxy, options)

    def get_object(self, bucket: str, key: str, version_id: str | None = None,
                   byte_range: tuple[int, int] | None = None, part_number: int | None = None) -> dict:
        """The version's fields and its streaming `Body` (to be closed)."""
        params = {"versionId": version_id} if version_id else {}
        if part_number:
            params["partNumber"] = part_number
        headers = {"Range": "bytes=%d-%d" % byte_range} if byte_range else {}
        response = self._send("GET", "GetObject", bucket, key, params, headers, stream=True)
        return dict(object_fields(response.headers), Body=Body(response))

    def head_object(self, bucket: str, key: str, version_id: str | None = None) -> dict:
        params = {"versionId": version_id} if version_id else {}
        return object_fields(self._send("HEAD", "HeadObject", bucket, key, params, {}).headers)

    def put_object(self, bucket: str, key: str, body, length: int, md5_b64: str, sha256_hex: str | None = None,
                   **arguments) -> dict:
        """One PUT of `length` bytes of `body` (a file, or a stream read once). The payload is signed when
        `sha256_hex` is given (the spool computes it over plain http), else sent UNSIGNED-PAYLOAD, over plain http
        too for a streamed body: its Content-MD5 is a signed header, so the target refuses a body that is not the
        one signed for."""
        headers = put_headers(length, md5_b64, arguments)
        payload = sha256_hex or UNSIGNED_PAYLOAD
        reply = self._send("PUT", "PutObject", bucket, key, {}, headers, body=body, payload=payload).headers
        return {field: reply[name] for name, field in (("etag", "ETag"), ("x-amz-version-id", "VersionId"))
                if reply.get(name)}

    def close(self) -> None:
        self.pool.close()

    def _send(self, method: str, operation: str, bucket: str, key: str, params: dict, headers: dict,
              body=None, payload: str = EMPTY_SHA256, stream: bool = False):
        """The reply of a 2xx; ClientError otherwise. A streamed reply is left open for its body."""
        path = object_path(self.prefix, bucket, key)
        query = canonical_query(params)
        signed = self.signer.sign(method, self.host, path, query, headers, payload)
        url = self.origin + path + ("?" + query if query else "")
        signed["User-Agent"] = USER_AGENT
        # decode_content=False: a body stored gzip-encoded is copied as stored, not decompressed on the way
        response = self.pool.urlopen(method, url, body=body, headers=signed, redirect=False, retries=False,
                                     preload_content=False, decode_content=False, assert_same_host=False)
        if 200 <= response.status < 300:
            if not stream:
                response.drain_conn()
                response.release_conn()
            return response
        try:
            content = b"" if method == "HEAD" else response.read(ERROR_BODY_MAX)
        finally:
            response.drain_conn()
            response.release_conn()
        raise client_error(response.status, response.headers, content, operation)


def _pool(url, proxy: str | None, options: dict):
    """The connection pool to the endpoint: direct, or through `proxy` as botocore would go."""
    if proxy:
        headers = ProxyConfiguration().proxy_headers_for(proxy)
        return urllib3.ProxyManager(proxy, num_pools=1, proxy_headers=headers, **options).connection_from_url(
            url.url)
    if url.scheme == "https":
        return urllib3.HTTPSConnectionPool(url.host, url.port or 443, **options)
    return urllib3.HTTPConnectionPool(url.host, url.port or 80, **options)


def make_data_client(endpoint: str | None, region: str, keys: dict, pool: int, read_timeout: float) -> S3Data:
    """An S3Data from what crr_worker.aws.make_client takes: the same credentials (keys, else botocore's default
    chain), the same endpoint (botocore's for the region when none is set) and CA bundle (AWS_CA_BUNDLE, the
    config file's ca_bundle, else botocore's default) and proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)."""
    session = botocore.session.Session()
    session.set_config_variable("region", region)
    if keys:
        session.set_credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"],
                                keys.get("aws_session_token"))
    if endpoint is None:
        probe = session.create_client("s3", region_name=region, config=Config(s3={"addressing_style": "path"}))
        endpoint = probe.meta.endpoint_url
        probe.close()
    proxy = ProxyConfiguration(get_environ_proxies(endpoint)).proxy_url_for(endpoint)
    return S3Data(endpoint, region, session.get_credentials(), pool, read_timeout,
                  session.get_config_variable("ca_bundle"), proxy)
