"""Per-version state on disk: a dict-like store of ledger-key digests in one sqlite3 file, so that what the
populator and the status processor keep of the ledger costs disk, not memory, however many versions it holds.

A store is a cache of the ledger topic, which stays the truth: it is rebuilt from the topic at each start. Each
store is a new file in a directory of its own, removed when the store is closed, dropped or its process ends;
directories left by a process that died (kill -9) are removed by the next store of the same name. A file from a
previous run is therefore never read, and cannot give a wrong answer.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sqlite3
import struct
import tempfile
import weakref
from collections.abc import Callable, Iterator

from crr_worker.config import ConfigError
from crr_worker.entries import FAILED, PENDING, Standing, StatusEntry, key_digest

BATCH = 500  # writes per transaction: one poll of the ledger

_STANDING = struct.Struct("<qqq")


class _SqliteFile:
    """One store's sqlite3 file, new at each start (see the module's docstring), written in grouped transactions:
    one stays open for BATCH writes or until commit() (readers call it after each poll), so applying the ledger
    costs one commit per poll, not per record. Reads see uncommitted writes. One thread at a time (the caller's
    lock, or the one thread that owns the store)."""

    def __init__(self, name: str, directory: str | None, schema: str):
        self.directory = _fresh_directory(name, directory)
        self.db = sqlite3.connect(os.path.join(self.directory, "store.sqlite"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")  # a cache: after a crash it is rebuilt, never read again
        self.db.executescript(schema)
        self.uncommitted = 0
        self._finalizer = weakref.finalize(self, _remove, self.db, self.directory)

    def commit(self) -> None:
        """End the open transaction, if any."""
        if self.uncommitted:
            self.db.execute("COMMIT")
            self.uncommitted = 0

    def close(self) -> None:
        """Close the file and remove it; the store is unusable afterwards."""
        self._finalizer()

    def _write(self, sql: str, parameters: tuple) -> None:
        self._write_many(sql, [parameters])

    def _write_many(self, sql: str, rows: list[tuple]) -> None:
        """Rows written in the open transaction (begun if none): one executemany for a poll's records."""
        if not rows:
            return
        if not self.uncommitted:
            self.db.execute("BEGIN")
        try:
            self.db.executemany(sql, rows)
        except BaseException:
            self.db.execute("ROLLBACK")  # else every later BEGIN fails: a transaction would still be open
            self.uncommitted = 0
            raise
        self.uncommitted += len(rows)
        if self.uncommitted >= BATCH:
            self.commit()


class DigestStore(_SqliteFile):
    """digest (bytes) -> value, with a dict's get, [], pop, in, len and items; values encoded to bytes on the way
    in, the digest the table's primary key."""

    def __init__(self, name: str, directory: str | None = None, encode: Callable[[object], bytes] = bytes,
                 decode: Callable[[bytes], object] = bytes):
        super().__init__(name, directory, "CREATE TABLE store (digest BLOB PRIMARY KEY, value BLOB NOT NULL) "
                                          "WITHOUT ROWID")
        self.encode, self.decode = encode, decode

    def get(self, digest: bytes, default=None):
        row = self.db.execute("SELECT value FROM store WHERE digest = ?", (digest,)).fetchone()
        return default if row is None else self.decode(row[0])

    def __getitem__(self, digest: bytes):
        row = self.db.execute("SELECT value FROM store WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        return self.decode(row[0])

    def __setitem__(self, digest: bytes, value) -> None:
        self.update({digest: value})

    def update(self, values: dict[bytes, object]) -> None:
        """Set every digest of `values` in one statement (a poll's records: much faster than one by one)."""
        self._write_many("INSERT OR REPLACE INTO store (digest, value) VALUES (?, ?)",
                         [(digest, self.encode(value)) for digest, value in values.items()])

    def pop(self, digest: bytes, default=None):
        value = self.get(digest, default)
        self._write("DELETE FROM store WHERE digest = ?", (digest,))
        return value

    def __contains__(self, digest: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM store WHERE digest = ?", (digest,)).fetchone() is not None

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM store").fetchone()[0]

    def items(self) -> Iterator[tuple[bytes, object]]:
        """Every (digest, value), in digest order, read lazily."""
        for digest, value in self.db.execute("SELECT digest, value FROM store ORDER BY digest"):
            yield digest, self.decode(value)


def standings_store(directory: str | None = None) -> DigestStore:
    """The status processor's standings by key digest, 24 bytes each on disk."""
    return DigestStore("standings", directory, lambda s: _STANDING.pack(*s), lambda b: Standing(*_STANDING.unpack(b)))


def digest_set(directory: str | None = None) -> DigestStore:
    """A set of digests (the populator's known versions): `store[digest] = b""` adds one."""
    return DigestStore("known-versions", directory)


def _fresh_directory(name: str, directory: str | None) -> str:
    """A new directory for one store under `directory` (stateDir, or the temp dir), after removing those of the
    same name whose process is gone."""
    parent = directory or tempfile.gettempdir()
    prefix = "crr-%s-" % name
    try:
        for entry in os.listdir(parent):
            found = re.fullmatch(re.escape(prefix) + r"(\d+)-\w+", entry)
            if found and not _alive(int(found.group(1))):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        return tempfile.mkdtemp(prefix="%s%d-" % (prefix, os.getpid()), dir=parent)
    except OSError as exc:
        raise ConfigError("stateDir", "cannot create the worker's on-disk cache in %s (%s): set stateDir to a "
                          "directory the worker may write" % (parent, exc.strerror or exc)) from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _remove(db: sqlite3.Connection, directory: str) -> None:
    db.close()
    shutil.rmtree(directory, ignore_errors=True)


class StatusStore(_SqliteFile):
    """The API's statuses by ledger key, on disk: the columns its queries select on (site, status, bucket, key,
    version id, times, each indexed where a query needs it) and the status record itself. Takes the ledger's
    records through ledger.apply_to_store; answers find, failed and the metrics' tallies in SQL, so
    no request or scrape holds every status in memory."""

    def __init__(self, directory: str | None = None):
        super().__init__("statuses", directory, _STATUS_SCHEMA)

    def put_many(self, statuses: dict[bytes, tuple[StatusEntry, bytes]]) -> None:
        """Store each (status, its ledger record's value as read) under its ledger key, in one statement: the
        record is kept as it came, not encoded again."""
        self._write_many("INSERT OR REPLACE INTO statuses (digest, site, status, bucket, key, version_id, queued_at, "
                         "updated_at, replay_at, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [_status_row(key, status, value) for key, (status, value) in statuses.items()])

    def pop(self, ledger_key: bytes, default=None):
        self._write("DELETE FROM statuses WHERE digest = ?", (key_digest(ledger_key),))
        return default

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM statuses").fetchone()[0]

    def find(self, bucket: str, key: str, version_id: str | None = None, site: str | None = None
             ) -> list[StatusEntry]:
        """ledger.find: statuses of `bucket`/`key` (one version or all), oldest write first."""
        found = self._select({"bucket": bucket, "key": key, "version_id": version_id, "site": site})
        return sorted(found, key=lambda s: (s.entry.enqueued_at, s.site))

    def failed(self, site: str | None = None, bucket: str | None = None, key: str | None = None,
               version_id: str | None = None) -> list[StatusEntry]:
        """ledger.failed: FAILED statuses, optionally of one site, bucket, key or version, oldest first."""
        found = self._select({"status": FAILED, "site": site, "bucket": bucket, "key": key, "version_id": version_id})
        return sorted(found, key=lambda s: (s.updated_at, s.entry.bucket, s.entry.key))

    def tallies(self) -> tuple[Iterator[StatusEntry], list[StatusEntry]]:
        """What the metrics need: one item per version (for each site and status, one of its statuses repeated
        as many times as it has versions: counted on the status index, never loaded), and each site's oldest
        PENDING status."""
        groups = [(self._one(status, site, waiting), count) for status, site, waiting, count in
                  self.db.execute("SELECT status, site, replay_at > 0, count(*) FROM statuses "
                                  "GROUP BY status, site, replay_at > 0").fetchall()]
        versions = itertools.chain.from_iterable(itertools.repeat(status, n) for status, n in groups)
        oldest = self.db.execute("SELECT value, min(queued_at) FROM statuses WHERE status = ? GROUP BY site",
                                 (PENDING,)).fetchall()
        return versions, [StatusEntry.from_kafka(value) for value, _ in oldest]

    def pending_per_site(self) -> dict[str, int]:
        """Per site, its PENDING versions (counted on the status index): what crr_pending_eta_seconds waits for."""
        return dict(self.db.execute("SELECT site, count(*) FROM statuses WHERE status = ? GROUP BY site",
                                    (PENDING,)).fetchall())

    def _one(self, status: str, site: str, waiting: int) -> StatusEntry:
        """One status of `site` in `status`, waiting for a replay or not: the group's stand-in in tallies."""
        row = self.db.execute("SELECT value FROM statuses WHERE status = ? AND site = ? AND (replay_at > 0) = ? "
                              "LIMIT 1", (status, site, waiting))
        return StatusEntry.from_kafka(row.fetchone()[0])

    def _select(self, equal: dict[str, str | None]) -> list[StatusEntry]:
        chosen = {column: value for column, value in equal.items() if value is not None}
        where = " AND ".join("%s = ?" % column for column in chosen)
        rows = self.db.execute("SELECT value FROM statuses WHERE " + where, tuple(chosen.values()))
        return [StatusEntry.from_kafka(value) for value, in rows]


def _status_row(ledger_key: bytes, status: StatusEntry, value: bytes) -> tuple:
    entry = status.entry
    return (key_digest(ledger_key), status.site, status.status, entry.bucket, entry.key, entry.version_id,
            entry.enqueued_at or status.updated_at, status.updated_at, status.replay_at, value)


_STATUS_SCHEMA = """
CREATE TABLE statuses (digest BLOB NOT NULL UNIQUE, site TEXT NOT NULL, status TEXT NOT NULL, bucket TEXT NOT NULL,
                       key TEXT NOT NULL, version_id TEXT, queued_at INTEGER, updated_at INTEGER,
                       replay_at INTEGER NOT NULL DEFAULT 0, value BLOB NOT NULL);
CREATE INDEX statuses_by_object ON statuses (bucket, key);
CREATE INDEX statuses_by_status ON statuses (status, site, queued_at);
"""
