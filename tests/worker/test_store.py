"""The on-disk stores of per-version state: a dict's behaviour, values kept on disk for the run, a fresh file at
each start so that what a previous run left is never read, and the API's queries answered as from memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from crr_worker.config import ConfigError
from crr_worker.entries import COMPLETED, FAILED, PENDING, ReplicationEntry, Standing, StatusEntry
from crr_worker.ledger import apply_records, apply_to_store, failed, find
from crr_worker.metrics import render_pending_age, render_states
from crr_worker.store import BATCH, DigestStore, StatusStore, digest_set, standings_store


def digest(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_the_store_gets_sets_pops_and_counts_like_a_dict(tmp_path):
    store = standings_store(str(tmp_path))
    first, second = Standing(1, 2, 3), Standing(4, 1, 6)
    store[digest(1)] = first
    store[digest(2)] = second
    store[digest(1)] = second  # replaced, not added
    assert store.get(digest(1)) == second and store[digest(2)] == second and len(store) == 2
    assert digest(2) in store and digest(3) not in store
    assert store.get(digest(3)) is None and store.get(digest(3), "none") == "none"
    with pytest.raises(KeyError):
        store[digest(3)]
    assert store.pop(digest(2)) == second and store.pop(digest(2), "gone") == "gone"
    assert dict(store.items()) == {digest(1): second} and len(store) == 1


def test_values_are_on_disk_and_kept_across_commits_and_threads_for_the_run(tmp_path):
    store = digest_set(str(tmp_path))
    count = BATCH * 3 + 7  # several automatic commits and an open transaction
    for n in range(count):
        store[digest(n)] = b""
    found = []
    reader = threading.Thread(target=lambda: found.append(sum(digest(n) in store for n in range(count))))
    reader.start()
    reader.join()
    store.commit()
    assert found == [count] and len(store) == count
    files = os.listdir(store.directory)
    assert "store.sqlite" in files and os.path.getsize(os.path.join(store.directory, "store.sqlite")) > 0
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_store_starts_empty_and_a_closed_or_dropped_one_leaves_no_file(tmp_path):
    first = DigestStore("cache", str(tmp_path))
    first[digest(1)] = b"x"
    first.commit()
    second = DigestStore("cache", str(tmp_path))
    assert len(second) == 0 and digest(1) not in second and second.directory != first.directory
    first.close()
    assert not os.path.exists(first.directory)
    directory = second.directory
    del second
    assert not os.path.exists(directory)


def test_what_a_dead_process_left_is_removed_at_start_and_a_live_ones_is_kept(tmp_path):
    # a store made by a process that then died without closing it (kill -9): its directory stays behind
    made = subprocess.run(
        [sys.executable, "-c", "import os, sys; from crr_worker.store import digest_set; "
         "s = digest_set(sys.argv[1]); s[bytes(16)] = b''; s.commit(); print(s.directory, flush=True); "
         "os._exit(0)", str(tmp_path)], capture_output=True, text=True, check=True)
    left = made.stdout.strip()
    assert os.path.exists(os.path.join(left, "store.sqlite"))
    alive = digest_set(str(tmp_path))  # this process's: alive
    fresh = digest_set(str(tmp_path))
    assert not os.path.exists(left) and os.path.exists(alive.directory) and len(fresh) == 0


def test_an_unwritable_state_dir_is_a_config_error_naming_state_dir(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as raised:
        digest_set(str(missing))
    assert "stateDir" in str(raised.value) and str(missing) in str(raised.value)


def _statuses() -> list[StatusEntry]:
    def entry(bucket, key, version, enqueued_at=0):
        return ReplicationEntry(bucket=bucket, key=key, version_id=version, sites=("s1", "s2"), enqueued_at=enqueued_at)
    return [StatusEntry(entry("b", "k", "v1", 100), "s1", PENDING, updated_at=150),
            StatusEntry(entry("b", "k", "v1", 100), "s2", FAILED, reason="x", updated_at=300),
            StatusEntry(entry("b", "k", "v2", 200), "s1", FAILED, reason="y", updated_at=250),
            StatusEntry(entry("b", "k", "v3", 210), "s1", FAILED, reason="y", updated_at=260, replay_at=900),
            StatusEntry(entry("b", "other", "v1"), "s1", PENDING, updated_at=50),
            StatusEntry(entry("c", "k", "v1", 400), "s2", COMPLETED, target_version_id="t", updated_at=450)]


def test_the_api_store_answers_find_failed_and_tallies_as_the_statuses_in_memory_do(tmp_path):
    records = [(s.ledger_key, s.to_kafka()[1]) for s in _statuses()]
    gone = StatusEntry(ReplicationEntry(bucket="b", key="gone", version_id="v", sites=("s1",)), "s1", FAILED)
    records += [(gone.ledger_key, gone.to_kafka()[1]), (gone.ledger_key, None)]  # written, then a tombstone
    store, memory = StatusStore(str(tmp_path)), {}
    assert apply_to_store(store, records) == apply_records(memory, records)
    assert len(store) == len(memory) == 6
    for arguments in [("b", "k"), ("b", "k", "v1"), ("b", "k", None, "s2"), ("b", "gone"), ("x", "k")]:
        assert store.find(*arguments) == find(memory, *arguments)
    for arguments in [(), ("s1",), ("s2", "b"), (None, "b", "k", "v2"), (None, "c")]:
        assert store.failed(*arguments) == failed(memory, *arguments)
    assert 'crr_replays_waiting{site="s1"} 1' in render_states(store.tallies()[0], {}, ["s1", "s2"], True)
    versions, oldest_pending = store.tallies()
    assert render_states(versions, {}, ["s1", "s2"], True) == render_states(list(memory.values()), {}, ["s1", "s2"],
                                                                            True)
    assert [(s.site, s.entry.key) for s in oldest_pending] == [("s1", "other")]
    assert render_pending_age(oldest_pending, ["s1", "s2"], 1.0) == render_pending_age(list(memory.values()),
                                                                                     ["s1", "s2"], 1.0)
    assert store.pending_per_site() == {"s1": 2}
