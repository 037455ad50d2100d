"""The ledger reader on the real broker: a second read returns only what was written since the first, and the
status processor's standings are the latest of each key."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from crr_worker.entries import COMPLETED, PENDING, ReplicationEntry, StatusEntry, key_digest
from crr_worker.kafka_io import ensure_topics, make_producer, send_all
from crr_worker.ledger import KnownVersions, LedgerReader, apply_records, read_standings

pytestmark = pytest.mark.integration


def statuses(versions: list[str], status: str) -> list[StatusEntry]:
    return [StatusEntry(ReplicationEntry(bucket="b", key="k", version_id=v, sites=("s1",)), "s1", status)
            for v in versions]


def write(config, written: list[StatusEntry]) -> None:
    producer = make_producer(config)
    try:
        send_all(producer, config.ledger_topic, [(s.ledger_key, s.to_kafka()[1]) for s in written])
    finally:
        producer.close(timeout=5)


def read_to_end(reader: LedgerReader) -> list:
    return [record for records in reader.batches_to_end() for record in records]


def test_reading_to_the_end_returns_the_whole_ledger_then_only_new_records(pair):
    config = pair.load()
    ensure_topics(config)
    write(config, statuses(["v1", "v2", "v3"], PENDING))
    reader = LedgerReader(config)
    try:
        first = apply_records({}, read_to_end(reader))
        assert sorted(s.entry.version_id for s in first) == ["v1", "v2", "v3"]

        assert read_to_end(reader) == []
        write(config, statuses(["v2"], COMPLETED) + statuses(["v4"], PENDING))
        second = apply_records({}, read_to_end(reader))
    finally:
        reader.close()
    assert sorted((s.entry.version_id, s.status) for s in second) == [("v2", COMPLETED), ("v4", PENDING)]
    known = KnownVersions()
    known.learn(second)
    assert ("s1", "b", "k", "v2") in known and ("s1", "b", "k", "v4") in known and len(known) == 2


def test_read_standings_keeps_the_latest_standing_of_every_ledger_key(pair):
    config = pair.load()
    ensure_topics(config)
    first = statuses(["v1", "v2"], PENDING)
    done = statuses(["v1"], COMPLETED)
    write(config, first + done)
    standings = read_standings(config)
    assert dict(standings.items()) == {key_digest(done[0].ledger_key): done[0].standing,
                                       key_digest(first[1].ledger_key): first[1].standing}


def test_standings_are_an_on_disk_store_rebuilt_from_the_ledger_at_each_read(pair, tmp_path):
    config = replace(pair.load(), state_dir=str(tmp_path))
    ensure_topics(config)
    write(config, statuses(["v1"], PENDING))
    first = read_standings(config)
    first[key_digest(b"not in the ledger")] = first[key_digest(statuses(["v1"], PENDING)[0].ledger_key)]
    first.commit()
    assert os.path.dirname(first.directory) == str(tmp_path) and len(first) == 2
    write(config, statuses(["v2"], COMPLETED))
    second = read_standings(config)  # a restart, or a rebalance: the ledger alone, nothing the first store held
    assert sorted(dict(second.items())) == sorted(key_digest(s.ledger_key) for s in statuses(["v1", "v2"], PENDING))
    first.close()
    assert not os.path.exists(first.directory) and len(second) == 2
