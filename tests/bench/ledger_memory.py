"""Memory per version of what the populator and the API keep of the ledger (they hold all of it in memory).

Builds N statuses the way both read them (StatusEntry.from_kafka of a ledger record) and measures with
tracemalloc: the API keeps the statuses, the populator only the known (site, bucket, key, version) tuples.
Needs no sandbox; asserts nothing.

Usage: .venv/bin/python tests/bench/ledger_memory.py [--versions 100000]
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "worker"))

from crr_worker.entries import PENDING, ReplicationEntry, StatusEntry  # noqa: E402
from crr_worker.ledger import known_versions  # noqa: E402


def ledger_records(count: int) -> list[bytes]:
    """Ledger values of `count` versions with realistic key and version id lengths, one site."""
    records = []
    for n in range(count):
        entry = ReplicationEntry(
            bucket="source-bucket", key="photos/2026/11/%08d.jpg" % n,
            version_id="3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH%08d" % n, is_delete_marker=False, size=4096,
            etag="d41d8cd98f00b204e9800998ecf8427e", last_modified="2026-11-21T13:00:00.000Z",
            sites=("awsbackend",), destination="arn:aws:s3:::target-bucket",
            role="arn:aws:iam::111111111111:role/crr", storage_class="awsbackend", storage_type="aws_s3")
        records.append(StatusEntry(entry, "awsbackend", PENDING).to_kafka()[1])
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    count = parser.parse_args(argv).versions
    records = ledger_records(count)
    tracemalloc.start()
    statuses = [StatusEntry.from_kafka(value) for value in records]
    known = known_versions(statuses)
    both = tracemalloc.get_traced_memory()[0]
    del statuses
    populator = tracemalloc.get_traced_memory()[0]
    print("populator (known versions): %.0f bytes per version" % (populator / count))
    print("API (statuses): %.0f bytes per version and site" % ((both - populator) / count))
    print("%d versions kept" % len(known))
    return 0


if __name__ == "__main__":
    sys.exit(main())
