"""When the populator gets where, from its process start to the first COMPLETED version: the part of a bench
run's worker time that the copy loop does not have. Starts a sandbox of its own; asserts nothing.

For each run: 2,000 x 4 KiB seeded, processor and status processor started and in their groups, then the
populator; its log records' times and the first COMPLETED's, in seconds from the populator's start.

Usage: .venv/bin/python tests/bench/start_timeline.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sandbox import lifecycle  # noqa: E402
from tests.bench.run_bench import KIB, LedgerTail, seed, wait_joined  # noqa: E402
from tests.worker.harness import log_records, logged_at, make_pair, start_pipeline, wait_for  # noqa: E402

OBJECTS = 2000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    workdir = Path(tempfile.mkdtemp(prefix="crr-timeline-"))
    state_dir = str(workdir / "sandbox")
    state = lifecycle.start(state_dir)
    try:
        for run in range(runs):
            print("run %d" % (run + 1))
            for seconds, what in timeline(state, workdir / ("run-%d" % run)):
                print("  %6.2f s  %s" % (seconds, what))
    finally:
        lifecycle.stop(state_dir)
    return 0


def timeline(state, directory: Path) -> list[tuple[float, str]]:
    directory.mkdir()
    pair = make_pair(state, directory, notifications=False, scan_interval_s=3600)
    seed(pair, ["k/%05d" % i for i in range(OBJECTS)], os.urandom(4 * KIB))
    wait_joined(start_pipeline(pair, populator=False), pair.config["kafka"]["partitions"])
    ledger = LedgerTail(pair)
    try:
        started = time.time()
        populator = pair.workers.start("populator")
        done = ledger.wait_completed(1, 120, "the first version COMPLETED")
        first = min(status.updated_at for status in done) / 1000.0
        wait_for(lambda: any(r.get("message") == "scan done" for r in log_records(populator)), 120, 0.2,
                 "the populator's scan")
    finally:
        ledger.close()
        pair.workers.stop_all()
    events = [(logged_at(record) - started, record["message"]) for record in log_records(populator)
              if record.get("message") != "populator stopped"]
    return sorted(events + [(first - started, "first version COMPLETED (ledger)")])


if __name__ == "__main__":
    sys.exit(main())
