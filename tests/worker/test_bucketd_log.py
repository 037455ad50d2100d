"""BucketdRaftLog against a local HTTP server answering as bucketd does in Arsenal's LogConsumer spec and
bucketclient's AdminGetSessionLog test (no live S3 Connector: the shapes are from those public sources)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from crr_worker.config import RecordLogConfig
from crr_worker.sources.bucketd_log import BucketdRaftLog
from crr_worker.sources.record_log import LogRecord, RecordLogError

MASTER_MD = json.dumps({"key": "", "isDeleteMarker": False, "versionId": "98502347359531999999RG001  5.2375.2122",
                        "replicationInfo": {"status": "PENDING", "storageClass": "aws1"}})
VERSION_KEY = "coolkey0\u000098502347359531999999RG001  5.2375.2122"
BUCKET_MD = json.dumps({"attributes": {"name": "funbucket"}})

# Three raft records from seq 10: a batch of two puts, a batch with a delete and a put, a keyless bucket create.
PAGE = {
    "info": {"start": 10, "end": 12, "prune": 10, "cseq": 12},
    "log": [
        {"db": "funbucket", "method": 8, "entries": [{"key": "coolkey0", "value": MASTER_MD},
                                                     {"key": VERSION_KEY, "value": MASTER_MD}]},
        {"db": "funbucket", "method": 8, "entries": [{"key": "old\u0000v1", "type": "del"},
                                                     {"key": "coolkey0", "value": "{}", "type": "put"}]},
        {"db": "users..bucket", "method": 0, "entries": [{"value": BUCKET_MD}]},
    ],
}


class Bucketd(ThreadingHTTPServer):
    """Answers every GET with `status` and `body` and remembers the paths and queries it was asked."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.body = 200, json.dumps(PAGE)
        self.requests: list[tuple[str, dict]] = []

    def answer(self, status: int, body: object = "") -> None:
        self.status, self.body = status, body if isinstance(body, str) else json.dumps(body)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        self.server.requests.append((url.path, parse_qs(url.query)))
        data = self.server.body.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def bucketd():
    server = Bucketd()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def raft_log(server: Bucketd, session_id: int = 1) -> BucketdRaftLog:
    config = RecordLogConfig(host="127.0.0.1", port=server.server_address[1], raft_sessions=(session_id,),
                             read_timeout_s=5)
    return BucketdRaftLog(config, session_id)


def test_a_page_numbers_its_records_from_info_start_and_tells_puts_from_deletes(bucketd):
    page = raft_log(bucketd).read(10, 500)
    assert page.records == [
        LogRecord(seq=10, db="funbucket", type="put", key="coolkey0", value=MASTER_MD),
        LogRecord(seq=10, db="funbucket", type="put", key=VERSION_KEY, value=MASTER_MD),
        LogRecord(seq=11, db="funbucket", type="del", key="old\u0000v1", value=None),
        LogRecord(seq=11, db="funbucket", type="put", key="coolkey0", value="{}"),
        LogRecord(seq=12, db="users..bucket", type="put", key="", value=BUCKET_MD),
    ]
    assert page.next_seq == 13


def test_the_read_asks_for_begin_and_limit_of_its_session_from_any_raft_member(bucketd):
    change_log = raft_log(bucketd, 7)
    change_log.read(10, 500)
    assert change_log.name == "bucketd:7"
    assert bucketd.requests == [("/_/raft_sessions/7/log", {"begin": ["10"], "limit": ["500"],
                                                            "targetLeader": ["false"]})]


def test_a_pruned_log_numbers_from_the_start_it_reports_not_from_begin(bucketd):
    bucketd.answer(200, {"info": {"start": 40, "cseq": 41, "prune": 40},
                         "log": [{"db": "b", "method": 8, "entries": [{"key": "k", "value": "{}"}]},
                                 {"db": "b", "method": 9, "entries": []}]})
    page = raft_log(bucketd).read(1, 500)
    assert page.records == [LogRecord(seq=40, db="b", type="put", key="k", value="{}")]
    assert page.next_seq == 42  # the record without entries is read past too


@pytest.mark.parametrize("status, body", [
    (416, ""),  # begin past cseq: Arsenal reads it as no new record
    (404, ""),  # no such raft session yet: Arsenal logs and ignores it
    (200, {"info": {"start": None, "end": None}}),  # the reply LogConsumer makes of those
    (200, {"info": {"start": 13, "cseq": 12, "prune": 1}, "log": []}),
])
def test_an_empty_or_past_the_end_read_gives_an_empty_page_at_start(bucketd, status, body):
    bucketd.answer(status, body)
    page = raft_log(bucketd).read(13, 500)
    assert page.records == [] and page.next_seq == 13


@pytest.mark.parametrize("status, body", [
    (500, '{"code": "InternalError"}'),
    (200, '{\n    "info": not json!,\n    "log": []\n}'),  # Arsenal's malformed log response
    (200, '{"info": {"start": 10}, "log": [{"db": "b", "entries": [{"key": "k"}]}, {{{ ]}'),
    (200, {"log": []}),
    (200, {"info": {"start": 10}}),
    (200, {"info": {"start": 10}, "log": {"db": "b"}}),
    (200, {"info": {"start": 10}, "log": ["not a record"]}),
    (200, {"info": {"start": "ten"}, "log": [{"db": "b", "entries": []}]}),
    (200, []),
])
def test_an_error_or_a_malformed_reply_raises_record_log_error(bucketd, status, body):
    bucketd.answer(status, body)
    with pytest.raises(RecordLogError):
        raft_log(bucketd).read(10, 500)


def test_an_unreachable_bucketd_raises_record_log_error(bucketd):
    change_log = raft_log(bucketd)
    bucketd.shutdown()
    bucketd.server_close()
    with pytest.raises(RecordLogError):
        change_log.read(10, 500)


def test_end_seq_is_after_the_cseq_bucketd_reports(bucketd):
    assert raft_log(bucketd, 3).end_seq() == 13
    assert bucketd.requests == [("/_/raft_sessions/3/log", {"limit": ["1"], "targetLeader": ["false"]})]


@pytest.mark.parametrize("status", [404, 416])
def test_end_seq_of_a_session_with_nothing_to_read_is_1(bucketd, status):
    bucketd.answer(status)
    assert raft_log(bucketd).end_seq() == 1


@pytest.mark.parametrize("status, body", [(500, ""), (200, {"info": {"start": 1}, "log": []}), (200, "nope")])
def test_end_seq_without_a_cseq_raises_record_log_error(bucketd, status, body):
    bucketd.answer(status, body)
    with pytest.raises(RecordLogError):
        raft_log(bucketd).end_seq()


def test_a_value_given_as_an_object_is_passed_on_as_json(bucketd):
    bucketd.answer(200, {"info": {"start": 5, "cseq": 5}, "log": [
        {"db": "b", "method": 8, "entries": [{"key": "k", "value": {"isDeleteMarker": True}}]}]})
    [record] = raft_log(bucketd).read(5, 1).records
    assert json.loads(record.value) == {"isDeleteMarker": True}
