"""CloudServer's `bucketd` change feed: the S3 Connector's raft session logs, read from bucketd's REST port.

Each raft session has its own numbered log, so there is one reader (and one checkpoint) per session. The
reply's shape was taken from public sources, not from a live S3 Connector (none was run against this code):
scality/Arsenal lib/storage/metadata/bucketclient/LogConsumer.js and its spec (Arsenal 94c7038e, file last
changed at ab823b27), the bucketclient RESTClient.getRaftLog and Go AdminGetSessionLog it stands on
(scality/bucketclient 00de8780), and Backbeat's lib/queuePopulator/LogReader.js, RaftLogReader.js,
IngestionReader.js (scality/backbeat 0a32e667). What they say:

- `GET /_/raft_sessions/<id>/log?begin=<seq>&limit=<n>&targetLeader=false` answers
  `{"info": {"start", "cseq", "prune"[, "end"]}, "log": [{"db", "method", ["timestamp",] "entries": [...]}]}`.
- A record's sequence number is `info.start` + its index (Backbeat's next offset is start + records read);
  `info.cseq` is the last committed one (Backbeat starts a new log at cseq + 1); `info.prune` is not used.
- An entry is `{"key", "value"}` (value a JSON string) for a put, `{"key", "type": "del"}` for a delete;
  a missing type means put. Records of bucket operations (create, attributes) carry keyless entries.
- 416 (begin past cseq) and 404 (no such raft session yet) are an empty read, not an error.

`targetLeader=false` lets any raft member answer, as Backbeat reads; a follower may lag the leader, which
only delays records (and makes end_seq early, so records are read twice rather than skipped).
"""

from __future__ import annotations

import json

import requests

from crr_worker.config import RecordLogConfig
from crr_worker.sources.record_log import LogPage, LogRecord, RecordLogError

RAFT_LOG_PATH = "/_/raft_sessions/%d/log"
EMPTY_READ_STATUSES = (404, 416)  # no such session yet; nothing at or after `begin`


class BucketdRaftLog:
    """The log of one bucketd raft session (a ChangeLog, see record_log.py)."""

    def __init__(self, config: RecordLogConfig, raft_session_id: int, session: requests.Session | None = None):
        self.config = config
        self.raft_session_id = int(raft_session_id)
        self.name = "bucketd:%d" % self.raft_session_id
        self.session = session or requests.Session()
        self.url = config.url + RAFT_LOG_PATH % self.raft_session_id

    def read(self, start_seq: int, limit: int) -> LogPage:
        reply = self._get({"begin": start_seq, "limit": limit})
        if reply is None:
            return LogPage([], start_seq)
        try:
            return parse_raft_log(reply, start_seq)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RecordLogError("%s at %s sent a reply that is not a raft log: %s"
                                 % (self.name, self.url, exc)) from exc

    def end_seq(self) -> int:
        """cseq + 1 from a one-record read without `begin`, as Backbeat starts a log at its end.
        A session that does not exist yet, or has nothing to read, starts at 1."""
        reply = self._get({"limit": 1})
        if reply is None:
            return 1
        try:
            return int(reply["info"]["cseq"]) + 1
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordLogError("%s at %s reported no cseq: %s" % (self.name, self.url, exc)) from exc

    def _get(self, query: dict) -> dict | None:
        """The decoded reply; None for an empty read (404, 416); RecordLogError for anything else."""
        query["targetLeader"] = "false"
        try:
            reply = self.session.get(self.url, params=query, timeout=(5, self.config.read_timeout_s))
        except requests.RequestException as exc:
            raise RecordLogError("%s at %s unreachable: %s" % (self.name, self.url, exc)) from exc
        if reply.status_code in EMPTY_READ_STATUSES:
            return None
        if reply.status_code != 200:
            raise RecordLogError("%s at %s answered %d: %s" % (self.name, self.url, reply.status_code,
                                                               reply.text[:200]))
        try:
            body = reply.json()
        except ValueError as exc:
            raise RecordLogError("%s at %s sent a reply that is not JSON: %s" % (self.name, self.url, exc)) from exc
        if not isinstance(body, dict):
            raise RecordLogError("%s at %s sent a JSON %s, not a raft log" % (self.name, self.url,
                                                                              type(body).__name__))
        return body


def parse_raft_log(reply: dict, start_seq: int) -> LogPage:
    """The records of one raft log reply, numbered from `info.start` (which may pass `begin` once the log
    is pruned). Every raft record counts, including those with no entries."""
    first = reply["info"]["start"]
    if first is None:
        return LogPage([], start_seq)
    log = reply["log"]
    if not isinstance(log, list):
        raise TypeError("log is %s, not a list" % type(log).__name__)
    if not log:
        return LogPage([], start_seq)
    records = []
    for index, item in enumerate(log):
        seq = int(first) + index
        db = str(item.get("db", ""))
        for entry in item.get("entries") or []:
            records.append(LogRecord(seq=seq, db=db, type=str(entry.get("type") or "put"),
                                     key=str(entry.get("key", "")), value=_value(entry.get("value"))))
    return LogPage(records, int(first) + len(log))


def _value(value: object) -> str | None:
    """The value string as given; an object (as CloudServer's admin proxy of this route shows it in
    Backbeat's test data) is written back as JSON, so readers always get a string."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
