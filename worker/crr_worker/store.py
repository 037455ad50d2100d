"""Per-version state on disk: a dict-like store of ledger-key digests in one sqlite3 file, so that what the
populator and the status processor keep of the ledger costs disk, not memory, however many versions it holds.

A store is a cache of the ledger topic, which stays the truth: it is rebuilt from the topic at each start. Each
store is a new file in a directory of its own, removed when the store is closed, dropped or its process ends;
directories left by a process that died (kill -9) are removed by the next store of the same name. A file from a
previous run is therefore never read, and cannot give a wrong answer.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import struct
import tempfile
import weakref
from collections.abc import Callable, Iterator

from crr_worker.config import ConfigError
from crr_worker.entries import Standing

BATCH = 500  # writes per transaction: one poll of the ledger

_STANDING = struct.Struct("<qqq")


class DigestStore:
    """digest (bytes) -> value, with a dict's get, [], pop, in and len; values encoded to bytes on the way in.

    Writes are grouped: a transaction stays open for BATCH writes or until commit() (a reader calls it after each
    poll), so applying the ledger costs one sqlite commit per poll, not per record. Reads see uncommitted writes.
    One thread at a time (the caller's lock, or the one thread that owns the store).
    """

    def __init__(self, name: str, directory: str | None = None, encode: Callable[[object], bytes] = bytes,
                 decode: Callable[[bytes], object] = bytes):
        self.encode, self.decode = encode, decode
        self.directory = _fresh_directory(name, directory)
        self.db = sqlite3.connect(os.path.join(self.directory, "store.sqlite"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")  # a cache: after a crash it is rebuilt, never read again
        self.db.execute("CREATE TABLE store (digest BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        self.uncommitted = 0
        self._finalizer = weakref.finalize(self, _remove, self.db, self.directory)

    def get(self, digest: bytes, default=None):
        row = self.db.execute("SELECT value FROM store WHERE digest = ?", (digest,)).fetchone()
        return default if row is None else self.decode(row[0])

    def __getitem__(self, digest: bytes):
        row = self.db.execute("SELECT value FROM store WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise KeyError(digest)
        return self.decode(row[0])

    def __setitem__(self, digest: bytes, value) -> None:
        self._write("INSERT OR REPLACE INTO store (digest, value) VALUES (?, ?)", (digest, self.encode(value)))

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

    def commit(self) -> None:
        """End the open transaction, if any."""
        if self.uncommitted:
            self.db.execute("COMMIT")
            self.uncommitted = 0

    def close(self) -> None:
        """Close the file and remove it; the store is unusable afterwards."""
        self._finalizer()

    def _write(self, sql: str, parameters: tuple) -> None:
        if not self.uncommitted:
            self.db.execute("BEGIN")
        self.db.execute(sql, parameters)
        self.uncommitted += 1
        if self.uncommitted >= BATCH:
            self.commit()


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
