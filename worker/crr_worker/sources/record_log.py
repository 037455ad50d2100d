"""CloudServer's change feeds read as numbered records: the file metadata daemon's record log (`dmd`).

A feed is read from a sequence number on; each page says where the next read starts. Pages carry every
metadata write (bucket records, master keys, placeholders, our own status writes): choosing what to
replicate is the source's job (sources/cloudserver.py), not the reader's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import requests

from crr_worker.config import RecordLogConfig

RECORD_LOG_PATH = "/MDFile/recordLog"


@dataclass(frozen=True)
class LogRecord:
    """One metadata write: `put` (with its value, a JSON string) or `del` (no value) of `key` in `db`."""

    seq: int
    db: str
    type: str
    key: str
    value: str | None = None


@dataclass(frozen=True)
class LogPage:
    records: list[LogRecord]
    next_seq: int


class RecordLogError(Exception):
    """The feed could not be read; the same range is read again later, never skipped."""


class ChangeLog(Protocol):
    name: str  # the checkpoint's key: one per log

    def read(self, start_seq: int, limit: int) -> LogPage:
        """Records from `start_seq` on, at most `limit`; an empty page (next_seq = start_seq) at the end."""

    def end_seq(self) -> int:
        """The sequence number the next record will have: where a feed started at its end begins."""


class DmdRecordLog:
    """The record log of CloudServer's file metadata daemon, over its REST port (`POST /MDFile/recordLog`)."""

    def __init__(self, config: RecordLogConfig, session: requests.Session | None = None):
        self.config = config
        self.name = "dmd:%s" % config.log_name
        self.session = session or requests.Session()

    def read(self, start_seq: int, limit: int) -> LogPage:
        body = {"call": "readRecords", "args": {"logName": self.config.log_name,
                                                "rpcArgs": [{"startSeq": start_seq, "limit": limit}]}}
        try:
            reply = self.session.post(self.config.url + RECORD_LOG_PATH, json=body,
                                      timeout=(5, self.config.read_timeout_s))
        except requests.RequestException as exc:
            raise RecordLogError("record log %s unreachable: %s" % (self.config.url, exc)) from exc
        if reply.status_code != 200:
            raise RecordLogError("record log %s answered %d: %s" % (self.config.url, reply.status_code,
                                                                    reply.text[:200]))
        try:
            return parse_read_records(reply.json(), start_seq)
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordLogError("record log %s sent a reply that is not readRecords': %s"
                                 % (self.config.url, exc)) from exc

    def end_seq(self) -> int:
        """Found by bisection on one-record reads (the daemon has no call for its last sequence number)."""
        low, high = 1, 1
        while self.read(high, 1).records:
            low, high = high, high * 2
        while low < high:  # read(low) has a record (or low == 1), read(high) has none
            middle = (low + high) // 2
            if self.read(middle, 1).records:
                low = middle + 1
            else:
                high = middle
        return high


def parse_read_records(reply: dict, start_seq: int) -> LogPage:
    """The records of one readRecords reply. There is no seq field: a record's is `info.start` + its index.
    Past the end (and for a log name the daemon does not know) `info.start` is null and the log empty."""
    result = reply["result"]
    first = result["info"]["start"]
    log = result["log"]
    if first is None or not log:
        return LogPage([], start_seq)
    records = []
    for index, item in enumerate(log):
        seq = int(first) + index
        for entry in item.get("entries", []):
            records.append(LogRecord(seq=seq, db=str(item.get("db", "")), type=str(entry.get("type", "put")),
                                     key=str(entry["key"]), value=entry.get("value")))
    last = result["info"].get("end")
    return LogPage(records, int(last) + 1 if last is not None else int(first) + len(log))
