"""A stand-in for CloudServer 8.8 built from captured exchanges, for tests that cannot run CloudServer.

It answers only what was really captured (tests/fixtures/cloudserver/samples, see the README there) and
checks every request against the captured one, so a client that passes here speaks CloudServer's wire
format. Requests it cannot vouch for are answered with an error and kept in `.mismatches` / `.unmatched`.

    with CloudServerReplay() as replay:
        replay.serve_record_log(records_of("s3_27_log_after_target_replica_write"))
        replay.serve("s5_01_source_get_metadata")
        ...  # point the client at replay.url
        assert not replay.mismatches and not replay.unmatched
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl

SAMPLES_DIR = Path(__file__).resolve().parent / "fixtures" / "cloudserver" / "samples"
RECORD_LOG_PATH = "/MDFile/recordLog"

# Request headers whose value changes what CloudServer does, so a replayed request must carry the captured value.
CHECKED_HEADERS = ("x-scal-canonical-id", "content-md5", "x-scal-replication-content")

# The record-log RPC server's own answers (s3_29, s3_30, s3_31); its replies have no Content-Type.
MISSING_LOG_NAME_ERROR = {"error": "Cannot read properties of undefined (reading 'nextSeq')"}
UNKNOWN_CALL_ERROR = "Unknown remote call %s in namespace " + RECORD_LOG_PATH
NOT_POST_ERROR = {"error": "MethodNotAllowed", "message": "only POST requests are supported for RPC calls"}
EMPTY_READ = {"result": {"info": {"start": None, "end": None}, "log": []}}

_SIGNED_BY = re.compile(r"SigV4 signature by ([^>\s]+)")
_OMITTED_BODY = re.compile(r"^<(\d+) bytes omitted; md5=([0-9a-f]{32})>$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ABSENT = object()  # a JSON key one side does not have


def load_sample(name: str) -> dict:
    """The captured exchange `name` (file name without .json)."""
    with open(SAMPLES_DIR / (name + ".json"), encoding="utf-8") as sample_file:
        return json.load(sample_file)


def records_of(sample_name: str) -> list:
    """The records a captured readRecords answer returned, ready for serve_record_log()."""
    return load_sample(sample_name)["response"]["body"]["result"]["log"]


def wire_json(value: Any) -> bytes:
    """JSON as CloudServer (JSON.stringify) writes it: compact, non-ASCII left as UTF-8.

    With this encoding every captured JSON body has the captured Content-Length again.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class ReceivedRequest:
    """One request as the replay server received it; `path` is percent-encoded as sent, `query` decoded."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Header value by case-insensitive name."""
        return _header(self.headers, name, default)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False  # record-log replies are chunked as captured; all others get a Content-Length


def _header(headers: dict, name: str, default: Optional[str] = None) -> Optional[str]:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return default


def _json_answer(status: int, value: Any) -> _Answer:
    """The replay server's own errors, shaped like CloudServer's /_/backbeat/* errors."""
    return _Answer(status, [("Content-Type", "application/json")], wire_json(value))


def _record_log_answer(status: int, value: Any) -> _Answer:
    """Chunked and without Content-Type, like every captured record-log reply."""
    return _Answer(status, [], wire_json(value), chunked=True)


def _non_empty(value: Any) -> bool:
    return value is not _ABSENT and value not in (None, "", [], {})


def _same_scalar(captured: Any, received: Any) -> bool:
    """Equal as JSON values: 13 and 13.0 are the same number, but true is not 1."""
    if isinstance(captured, bool) or isinstance(received, bool):
        return captured is received
    if isinstance(captured, (int, float)) and isinstance(received, (int, float)):
        return captured == received
    return type(captured) is type(received) and captured == received


def json_differences(captured: Any, received: Any, allow=(), path: str = "") -> list:
    """Dotted paths where `received` is not the captured JSON; at an `allow` path any non-empty value passes."""
    where = path or "<body>"
    if path in allow:
        if _non_empty(received):
            return []
        return [
            "%s: may change but must not be empty, got %s"
            % (where, "nothing" if received is _ABSENT else repr(received))
        ]
    if captured is _ABSENT or received is _ABSENT:
        state = "missing" if received is _ABSENT else "not in the captured request"
        return ["%s: %s" % (where, state)]
    if isinstance(captured, dict) and isinstance(received, dict):
        keys = list(captured) + [key for key in received if key not in captured]
        return [
            difference
            for key in keys
            for difference in json_differences(
                captured.get(key, _ABSENT), received.get(key, _ABSENT), allow, "%s.%s" % (path, key) if path else key
            )
        ]
    if isinstance(captured, list) and isinstance(received, list) and len(captured) == len(received):
        return [
            difference
            for index, (old, new) in enumerate(zip(captured, received))
            for difference in json_differences(old, new, allow, "%s[%d]" % (path, index))
        ]
    if isinstance(captured, (dict, list)) or isinstance(received, (dict, list)) or not _same_scalar(captured, received):
        return ["%s: captured %s, got %s" % (where, json.dumps(captured), json.dumps(received))]
    return []


class _Exchange:
    """A registered sample: when a request is routed to it, what is wrong with the request, and the reply."""

    def __init__(self, name: str, allow=(), access_key: Optional[str] = None, route: Optional[tuple] = None,
                 object_md: Optional[str] = None):
        self.name = name
        self.sample = load_sample(name)
        if route is not None:
            self.sample["request"]["path"], self.sample["request"]["query"] = route
        if object_md is not None:
            self.sample["response"]["body"] = {"Body": object_md}
        self.allow = frozenset(allow)
        request = self.sample["request"]
        signer = _SIGNED_BY.search(_header(request["headers"], "Authorization", ""))
        self.access_key = access_key or (signer.group(1) if signer else None)
        self.reply = self._build_reply()

    def routes_to(self, received: ReceivedRequest) -> bool:
        request = self.sample["request"]
        return (received.method, received.path, received.query) == (
            request["method"],
            request["path"],
            request["query"],
        )

    def problems(self, received: ReceivedRequest) -> list:
        return (
            self._signature_problems(received)
            + self._payload_hash_problems(received)
            + self._header_problems(received)
            + self._body_problems(received)
        )

    def _signature_problems(self, received: ReceivedRequest) -> list:
        """Only who signed is checked: the replay server does not know the secret keys."""
        authorization = received.header("Authorization")
        if self.access_key is None:
            return [] if authorization is None else ["the captured request was unsigned, got " + authorization]
        if (authorization or "").startswith("AWS4-HMAC-SHA256 Credential=%s/" % self.access_key):
            return []
        return ["expected Authorization: AWS4-HMAC-SHA256 Credential=%s/..., got %r" % (self.access_key, authorization)]

    def _payload_hash_problems(self, received: ReceivedRequest) -> list:
        payload_hash = received.header("X-Amz-Content-SHA256")
        if payload_hash is None:
            captured = _header(self.sample["request"]["headers"], "X-Amz-Content-SHA256")
            return [] if captured is None else ["X-Amz-Content-SHA256 missing (the captured request had one)"]
        body_hash = hashlib.sha256(received.body).hexdigest()
        if _HEX_SHA256.match(payload_hash) and payload_hash != body_hash:
            return ["X-Amz-Content-SHA256 %s is not the body's sha256 %s" % (payload_hash, body_hash)]
        return []

    def _header_problems(self, received: ReceivedRequest) -> list:
        problems = []
        for name in CHECKED_HEADERS:
            captured = _header(self.sample["request"]["headers"], name)
            got = received.header(name)
            if "header:" + name in self.allow:
                if captured is not None and not got:
                    problems.append("header %s: may change but must be present" % name)
            elif got != captured:
                problems.append("header %s: captured %r, got %r" % (name, captured, got))
        return problems

    def _body_problems(self, received: ReceivedRequest) -> list:
        captured = self.sample["request"]["body"]
        if isinstance(captured, (dict, list)):
            try:
                body = json.loads(received.body)
            except ValueError:
                return ["body: captured JSON, got %r" % received.body[:80]]
            return json_differences(captured, body, self.allow)
        omitted = _OMITTED_BODY.match(captured)
        if omitted:  # large bodies were captured as their size and MD5 only
            size, md5 = int(omitted.group(1)), omitted.group(2)
            if (len(received.body), hashlib.md5(received.body).hexdigest()) != (size, md5):
                return ["body: captured %d bytes with md5 %s, got %d bytes" % (size, md5, len(received.body))]
            return []
        if received.body != captured.encode("utf-8"):
            return ["body: captured %r, got %r" % (captured[:80], received.body[:80])]
        return []

    def _build_reply(self) -> _Answer:
        response = self.sample["response"]
        body = response["body"]
        if isinstance(body, str) and _OMITTED_BODY.match(body):
            raise ValueError(
                "%s: its response body was not captured (%s), so it cannot be replayed" % (self.name, body)
            )
        payload = wire_json(body) if isinstance(body, (dict, list)) else body.encode("utf-8")
        framing = ("content-length", "transfer-encoding")
        headers = [(name, value) for name, value in response["headers"].items() if name.lower() not in framing]
        if self.sample["request"]["method"] == "HEAD":  # HEAD tells the object's size and sends no body
            captured_length = _header(response["headers"], "Content-Length")
            headers += [("Content-Length", captured_length)] if captured_length is not None else []
            return _Answer(response["status"], headers)
        return _Answer(response["status"], headers, payload)  # _write() adds the Content-Length of `payload`


@dataclass
class _RecordLog:
    name: str
    first_seq: int
    records: list


class CloudServerReplay:
    """An HTTP server on 127.0.0.1 answering the registered captured exchanges and a record log.

    Both CloudServer ports (S3 :8000 and the metadata REST :9993) are served from this one address; their
    paths do not overlap. Use two instances if the client must see two different hosts.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._exchanges: list = []
        self._record_log: Optional[_RecordLog] = None
        self._requests: list = []
        self._mismatches: list = []
        self._unmatched: list = []
        self._holds: list = []
        self._releases: list = []
        self._held_requests: list = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle

    def start(self) -> CloudServerReplay:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ReplayHandler)
        self._server.daemon_threads = True
        self._server.replay = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="cloudserver-replay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for release in self._releases:
                release.set()  # nothing stays held past the server
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> CloudServerReplay:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the replay server is not started")
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    # -- what it answers

    def serve(self, sample_name: str, allow=(), access_key: Optional[str] = None) -> None:
        """Answer requests shaped like the captured one with its response, as often as asked.

        `allow` lists JSON body paths ("replicationInfo.backends[0].dataStoreVersionId") and headers
        ("header:content-md5") that may differ from the capture if not empty; `access_key` replaces the
        key the captured request was signed with.
        """
        exchange = _Exchange(sample_name, allow, access_key)
        with self._lock:
            self._exchanges.append(exchange)

    def serve_for(self, sample_name: str, path: str, query: dict, access_key: Optional[str] = None) -> None:
        """Answer another route with a captured error answer that does not depend on the route's key (e.g.
        s5_e07's 404 ObjNotFound for a key that does not exist), where no capture holds that key's."""
        exchange = _Exchange(sample_name, (), access_key, route=(path, query))
        with self._lock:
            self._exchanges.append(exchange)

    def serve_metadata(self, sample_name: str, object_md: str, route: Optional[tuple] = None,
                       access_key: Optional[str] = None) -> None:
        """Answer a captured `GET /_/backbeat/metadata` exchange (for `route` = (path, query) when given) with
        another ObjectMD (JSON), for a state no GET captured: one a captured record log or PUT holds."""
        exchange = _Exchange(sample_name, (), access_key, route=route, object_md=object_md)
        with self._lock:
            self._exchanges.append(exchange)

    def serve_record_log(self, records: list, log_name: str = "s3-recordlog", first_seq: int = 1) -> None:
        """Serve readRecords on POST /MDFile/recordLog from `records`, numbered from `first_seq` in list order.

        Seqs below `first_seq` hold nothing, so reading from seq 1 starts at `first_seq`, as a range read would.
        """
        with self._lock:
            self._record_log = _RecordLog(log_name, first_seq, copy.deepcopy(list(records)))

    def append_records(self, records: list) -> None:
        """Grow the served record log, e.g. while the client is polling it."""
        with self._lock:
            if self._record_log is None:
                raise RuntimeError("serve_record_log() first")
            self._record_log.records.extend(copy.deepcopy(list(records)))

    # -- what it saw

    @property
    def requests(self) -> list:
        """Every ReceivedRequest, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def mismatches(self) -> list:
        """One readable line per way a request differed from the captured one it was routed to."""
        with self._lock:
            return list(self._mismatches)

    @property
    def unmatched(self) -> list:
        """The ReceivedRequests no registered exchange routes to."""
        with self._lock:
            return list(self._unmatched)

    def requests_to(self, method: str, path_prefix: str) -> list:
        """The received requests with this method whose path starts with `path_prefix`."""
        return [
            request for request in self.requests if request.method == method and request.path.startswith(path_prefix)
        ]

    def hold(self, method: str, path_prefix: str) -> threading.Event:
        """Keep the next request of `method` under `path_prefix` waiting, unapplied and unanswered, until the
        returned event is set; its connection is then closed (a server that died before applying it). The held
        request is listed in `.held`, not in `.requests`."""
        release = threading.Event()
        with self._lock:
            self._holds.append((method, path_prefix, release))
            self._releases.append(release)
        return release

    @property
    def held(self) -> list:
        with self._lock:
            return list(self._held_requests)

    def _held(self, received: ReceivedRequest) -> bool:
        with self._lock:
            hold = next((h for h in self._holds if received.method == h[0] and received.path.startswith(h[1])), None)
            if hold is None:
                return False
            self._holds.remove(hold)
            self._held_requests.append(received)
        hold[2].wait()
        return True

    # -- answering (called from the server's threads)

    def _answer(self, received: ReceivedRequest) -> _Answer:
        with self._lock:
            self._requests.append(received)
            if received.path == RECORD_LOG_PATH and self._record_log is not None:
                return self._answer_record_log(received)
            return self._answer_exchange(received)

    def _answer_exchange(self, received: ReceivedRequest) -> _Answer:
        candidates = [exchange for exchange in self._exchanges if exchange.routes_to(received)]
        if not candidates:
            self._unmatched.append(received)
            return _json_answer(
                404, {"code": "ReplayUnmatched", "message": "no captured exchange for " + _line(received)}
            )
        problems_by_exchange = [(exchange, exchange.problems(received)) for exchange in candidates]
        exchange, problems = min(problems_by_exchange, key=lambda pair: len(pair[1]))  # the first clean one wins
        if problems:
            return self._mismatch(received, exchange.name, problems)
        return exchange.reply

    def _mismatch(self, received: ReceivedRequest, sample_name: str, problems: list) -> _Answer:
        lines = ["%s vs %s: %s" % (_line(received), sample_name, problem) for problem in problems]
        self._mismatches.extend(lines)
        return _json_answer(400, {"code": "ReplayMismatch", "message": "; ".join(lines)})

    def _answer_record_log(self, received: ReceivedRequest) -> _Answer:
        if received.method != "POST":
            return _record_log_answer(405, NOT_POST_ERROR)
        try:
            rpc = json.loads(received.body)
            call, args = rpc["call"], rpc["args"]
        except (ValueError, KeyError, TypeError):
            return self._mismatch(
                received, "readRecords", ['body is not {"call", "args"} JSON: %r' % received.body[:80]]
            )
        if call != "readRecords":
            return _record_log_answer(400, {"error": "InvalidArgument", "message": UNKNOWN_CALL_ERROR % call})
        if "logName" not in args:
            return _record_log_answer(500, MISSING_LOG_NAME_ERROR)
        params = (args.get("rpcArgs") or [None])[0]
        if not _is_read_params(params):
            return self._mismatch(
                received, "readRecords", ["rpcArgs must be [{startSeq, limit}] as captured: %r" % params]
            )
        return _record_log_answer(200, self._read_records(args["logName"], params["startSeq"], params["limit"]))

    def _read_records(self, log_name: str, start_seq: int, limit: int) -> dict:
        """readRecords as CloudServer answers it: info.start/end are the seqs of the first/last record returned."""
        log = self._record_log
        if log_name != log.name:  # an unknown log is silently empty (s3_26)
            return EMPTY_READ
        first = max(start_seq, log.first_seq)
        chosen = log.records[first - log.first_seq : first - log.first_seq + limit]
        if not chosen:  # past the end (s3_24)
            return EMPTY_READ
        return {"result": {"info": {"start": first, "end": first + len(chosen) - 1}, "log": chosen}}


def _is_read_params(params: Any) -> bool:
    """Only {startSeq, limit} with positive integers were captured; anything else would be a guess."""
    return (
        isinstance(params, dict)
        and set(params) == {"startSeq", "limit"}
        and all(type(params[name]) is int and params[name] > 0 for name in params)
    )


def _line(received: ReceivedRequest) -> str:
    query = "&".join(name + ("=" + value if value else "") for name, value in received.query.items())
    return "%s %s%s" % (received.method, received.path, "?" + query if query else "")


class _ReplayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as botocore and requests use them

    def _handle(self) -> None:
        path, _, raw_query = self.path.partition("?")
        received = ReceivedRequest(
            method=self.command,
            path=path,
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            headers=dict(self.headers.items()),
            body=self._read_body(),
        )
        if self.server.replay._held(received):
            self.close_connection = True  # dropped unanswered: the server never applied it
            return
        self._write(self.server.replay._answer(received))

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
                if size == 0:
                    return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _write(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif answer.status not in (204, 304) and _header(dict(answer.headers), "Content-Length") is None:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if answer.chunked:
            self.wfile.write(
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(answer.body), answer.body) if answer.body else b"0\r\n\r\n"
            )
        else:
            self.wfile.write(answer.body)

    def log_message(self, format, *args) -> None:
        """Quiet: the tests read .requests instead of stderr."""
