"""Memory per version of what the populator, the status processor and the API keep of the ledger.

Each holds one item per version of every replicated bucket: the API the statuses, the status processor their
standings by key digest, the populator the digests of the known (site, bucket, key, version). Builds N ledger
records and applies them the way each reads them, 500 at a time (one poll), measuring with tracemalloc what is
kept and the peak while reading. Needs no sandbox; asserts nothing.

Usage: .venv/bin/python tests/bench/ledger_memory.py [--versions 100000]
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "worker"))

from crr_worker.entries import PENDING, ReplicationEntry, StatusEntry  # noqa: E402
from crr_worker.ledger import KnownVersions, apply_records, apply_standings  # noqa: E402

POLL = 500


def ledger_records(count: int) -> list[tuple[bytes, bytes]]:
    """Ledger records of `count` versions with realistic key and version id lengths, one site."""
    records = []
    for n in range(count):
        entry = ReplicationEntry(
            bucket="source-bucket", key="photos/2026/11/%08d.jpg" % n,
            version_id="3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH%08d" % n, is_delete_marker=False, size=4096,
            etag="d41d8cd98f00b204e9800998ecf8427e", last_modified="2026-11-21T13:00:00.000Z",
            sites=("awsbackend",), destination="arn:aws:s3:::target-bucket",
            role="arn:aws:iam::111111111111:role/crr", storage_class="awsbackend", storage_type="aws_s3")
        status = StatusEntry(entry, "awsbackend", PENDING)
        records.append((status.ledger_key, status.to_kafka()[1]))
    return records


def populator(polls):
    known = KnownVersions()
    for records in polls:
        known.learn(apply_records({}, records))
    return known


def status_processor(polls):
    standings = {}
    for records in polls:
        apply_standings(standings, records)
    return standings


def api(polls):
    statuses = {}
    for records in polls:
        apply_records(statuses, records)
    return statuses


def measure(read, records: list) -> tuple[int, int, int]:
    """(bytes kept, peak bytes while reading, items kept) of `read` over the records, one poll at a time."""
    polls = [records[start:start + POLL] for start in range(0, len(records), POLL)]
    tracemalloc.start()
    kept = read(polls)
    size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size, peak, len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    count = parser.parse_args(argv).versions
    records = ledger_records(count)
    for name, read in (("populator (known versions)", populator), ("status processor (standings)", status_processor),
                       ("API (statuses)", api)):
        size, peak, kept = measure(read, records)
        print("%s: %.0f bytes per version kept, %.0f at the peak while reading (%d kept)"
              % (name, size / count, peak / count, kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
