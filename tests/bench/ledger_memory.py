"""Memory per version, and speed, of what the populator, the status processor and the API keep of the ledger.

Each holds one item per version of every replicated bucket: the API the statuses, the status processor their
standings by key digest, the populator the digests of the known (site, bucket, key, version). Applies N ledger
records the way each reads them, 500 at a time (one poll), each reader in a forked process of its own so that
their figures do not mix: the resident memory it grew by and kept (RSS, which counts sqlite's pages too, unlike
tracemalloc), its peak growth while reading (VmHWM), the disk its store took, and records applied per second
(records built per poll, outside the timing). Needs no sandbox; asserts nothing.

Runs against the code before the on-disk stores too (`PYTHONPATH` to an older `worker/`): dicts are then used.

Usage: .venv/bin/python tests/bench/ledger_memory.py [--versions 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "worker"))

from crr_worker import ledger  # noqa: E402
from crr_worker.entries import PENDING, ReplicationEntry, StatusEntry  # noqa: E402
from crr_worker.ledger import KnownVersions, apply_records, apply_standings  # noqa: E402

ON_DISK = hasattr(ledger, "standings_store")  # False on the code before the on-disk stores: dicts
if ON_DISK:
    from crr_worker.store import StatusStore, standings_store  # noqa: E402

POLL = 500


def ledger_polls(count: int):
    """Ledger records of `count` versions with realistic key and version id lengths, one site, a poll at a time."""
    for start in range(0, count, POLL):
        records = []
        for n in range(start, min(count, start + POLL)):
            entry = ReplicationEntry(
                bucket="source-bucket", key="photos/2026/11/%08d.jpg" % n,
                version_id="3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH%08d" % n, is_delete_marker=False, size=4096,
                etag="d41d8cd98f00b204e9800998ecf8427e", last_modified="2026-11-21T13:00:00.000Z",
                sites=("awsbackend",), destination="arn:aws:s3:::target-bucket",
                role="arn:aws:iam::111111111111:role/crr", storage_class="awsbackend", storage_type="aws_s3")
            status = StatusEntry(entry, "awsbackend", PENDING)
            records.append((status.ledger_key, status.to_kafka()[1]))
        yield records


def populator():
    known = KnownVersions()
    return known, lambda records: known.learn(apply_records({}, records))


def status_processor():
    standings = standings_store() if ON_DISK else {}
    return standings, lambda records: apply_standings(standings, records)


def api():
    if ON_DISK:
        statuses = StatusStore()
        return statuses, lambda records: ledger.apply_to_store(statuses, records)
    statuses = {}
    return statuses, lambda records: apply_records(statuses, records)


def _memory_kb() -> dict[str, int]:
    with open("/proc/self/status", encoding="ascii") as status:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status) if k in ("VmRSS", "VmHWM")}


def _disk_bytes(kept) -> int:
    directory = getattr(getattr(kept, "digests", kept), "directory", None)
    if directory is None:
        return 0
    return sum(p.stat().st_size for p in Path(directory).iterdir())


def measure(make, count: int) -> dict:
    """The figures of one reader over `count` versions (see the module's docstring)."""
    before = _memory_kb()["VmRSS"]
    kept, apply = make()
    elapsed = 0.0
    for records in ledger_polls(count):
        started = time.perf_counter()
        apply(records)
        elapsed += time.perf_counter() - started
    after = _memory_kb()
    return {"kept": (after["VmRSS"] - before) * 1024 / count, "peak": (after["VmHWM"] - before) * 1024 / count,
            "disk": _disk_bytes(kept) / count, "rate": count / elapsed, "items": len(kept)}


def in_child(make, count: int) -> dict:
    """measure() in a forked process, its figures sent back as JSON."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        with os.fdopen(write_end, "w") as out:
            json.dump(measure(make, count), out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as result:
        figures = json.load(result)
    os.waitpid(pid, 0)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100_000)
    count = parser.parse_args(argv).versions
    for name, make in (("populator (known versions)", populator), ("status processor (standings)", status_processor),
                       ("API (statuses)", api)):
        f = in_child(make, count)
        print("%s: %.0f B of memory per version kept, %.0f at the peak, %.0f B of disk; %.0f records/s (%d kept)"
              % (name, f["kept"], f["peak"], f["disk"], f["rate"], f["items"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
