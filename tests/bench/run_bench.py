"""Benchmark of the worker against a plain GET->PUT copy loop, on a sandbox of its own (Kafka + two moto servers).

Not a test: it measures and prints, it asserts nothing. Phases, each on a fresh sandbox (moto keeps a temp-file
copy of every object >= 5 MiB per ListObjectVersions until it stops, so big objects never share a sandbox):

  small    N x 4 KiB, same concurrency: the copy loop (the goal's baseline), the checked copy loop (the same
           plus the target HEAD and, >= 64 MiB, the multipart upload the issue requires: the goal's ceiling when
           CPU-bound), and the worker (populator scan + processor + status processor)
  big      M x 64 MiB, same comparison
  latency  PUT on the source at a steady rate with SQS notifications -> COMPLETED (replica written) on the target
  rss      peak RSS (VmHWM) of the processor while it copies one big object
  remote   `small` with both endpoints behind a proxy that holds back each response by --rtt-ms (default 30):
           endpoints across a WAN, where a copy waits on the network rather than on the 2 cores (not in the default
           phases)

Usage: .venv/bin/python tests/bench/run_bench.py [--quick] [--phases small,big,latency,rss,remote] [--rtt-ms 30]
       [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # test_crr_bucket_replication (StoredReplicationProxy) imports `playbook`

from botocore.exceptions import ClientError  # noqa: E402

from sandbox import lifecycle  # noqa: E402
from tests.worker.harness import SITE, log_records, make_pair, start_pipeline, wait_for  # noqa: E402

KIB, MIB = 1024, 1024 * 1024
CONCURRENCY = 8  # the processor's default; the copy loop uses as many threads
MPU_THRESHOLD = 64 * MIB  # the worker's defaults (queueProcessor.mpuThreshold, mpuPartSize)
MPU_PART_SIZE = 16 * MIB
DISK_BUDGET_BYTES = 20 * 1024 * MIB


@dataclass(frozen=True)
class Sizes:
    small_count: int
    big_count: int
    big_size: int
    rate_per_s: float
    latency_s: float
    rss_size: int


FULL = Sizes(small_count=2000, big_count=20, big_size=64 * MIB, rate_per_s=20, latency_s=60, rss_size=1024 * MIB)
QUICK = Sizes(small_count=200, big_count=4, big_size=64 * MIB, rate_per_s=20, latency_s=15, rss_size=256 * MIB)


@dataclass
class Throughput:
    """One side of a comparison: how many objects and bytes in how long."""

    objects: int
    bytes: int
    seconds: float
    first_completed_s: float | None = None  # worker only: from the populator's start to the first COMPLETED
    cpu_s: dict | None = None  # CPU seconds per process meanwhile (CpuMeter)

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MIB / self.seconds


class DiskGuard:
    """Stops the benchmark before it uses more than DISK_BUDGET_BYTES of the root file system."""

    def __init__(self):
        self.start_free = shutil.disk_usage("/").free

    def check(self, where: str) -> None:
        used = self.start_free - shutil.disk_usage("/").free
        say("disk used so far: %.1f GiB (%s)" % (used / 1024 / MIB, where))
        if used > DISK_BUDGET_BYTES:
            raise RuntimeError("disk budget exceeded at %s: %.1f GiB used" % (where, used / 1024 / MIB))


class CpuMeter:
    """CPU seconds (user + system) each process of a run used between start() and stop(): where the 2 cores went.

    Everything shares the same cores, so a side's throughput is bounded by the CPU its whole chain needs.
    """

    def __init__(self, processes: dict[str, int]):
        self.processes = processes  # name -> pid
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: _cpu_seconds(pid) for name, pid in self.processes.items()}

    def add(self, name: str, pid: int) -> None:
        """A process started after start(): all its CPU counts."""
        self.processes[name] = pid
        self.before[name] = 0.0

    def stop(self) -> dict[str, float]:
        used = {name: round(_cpu_seconds(pid) - self.before[name], 1) for name, pid in self.processes.items()}
        return dict(used, total=round(sum(used.values()), 1))


def _cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sandbox_processes(state) -> dict[str, int]:
    """The broker's and both moto servers' pids, plus this process (the copy loop's client, the ledger reader)."""
    return dict({name: ref.pid for name, ref in state.services()}, benchmark=os.getpid())


class RemoteEndpoints:
    """Both moto servers seen through latency_proxy.py (each response held back by `rtt_ms`).

    Entering gives a copy of the sandbox state whose endpoint URLs are the proxies'; the proxies' pids are
    added to `processes` so that the CPU accounting shows them.
    """

    def __init__(self, state, rtt_ms: float, processes: dict[str, int]):
        self.state, self.rtt_ms, self.processes = state, rtt_ms, processes
        self.proxies: list[subprocess.Popen] = []

    def __enter__(self):
        endpoints = {}
        for name, endpoint in self.state.endpoints.items():
            port = endpoint.url.rsplit(":", 1)[1]
            proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("latency_proxy.py")), port,
                                      str(self.rtt_ms)], stdout=subprocess.PIPE, text=True)
            self.proxies.append(proxy)
            self.processes["proxy-" + name] = proxy.pid
            endpoints[name] = dataclasses.replace(endpoint, url="http://127.0.0.1:%s" % proxy.stdout.readline().strip())
        return dataclasses.replace(self.state, endpoints=endpoints)

    def __exit__(self, *exc):
        for proxy in self.proxies:
            proxy.terminate()
            proxy.wait(timeout=10)


def say(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


class Sandbox:
    """A fresh sandbox per phase, in a directory of its own; stopped (processes and moto temp files) after."""

    def __init__(self, root: str, name: str):
        self.state_dir = os.path.join(root, name)

    def __enter__(self):
        self.state = lifecycle.start(self.state_dir)
        return self.state

    def __exit__(self, *exc):
        lifecycle.stop(self.state_dir)


class LedgerTail:
    """The pair's ledger, followed incrementally (crr_worker.ledger.LedgerReader): each poll applies what is new.

    Re-reading the whole ledger every second (as the tests may) costs the benchmark's own process and the broker
    CPU that the worker needs on a 2-core machine: about 4 CPU-seconds per small phase, measured.
    """

    def __init__(self, pair):
        from crr_worker.ledger import LedgerReader

        self.reader = LedgerReader(pair.load())
        self.statuses: dict = {}

    def completed(self) -> list:
        """The site's COMPLETED statuses read so far."""
        from crr_worker.ledger import apply_records

        apply_records(self.statuses, self.reader.poll(timeout_ms=200))
        return [s for s in self.statuses.values() if s.site == SITE and s.status == "COMPLETED"]

    def wait_completed(self, count: int, timeout_s: float, what: str) -> list:
        return wait_for(lambda: (found := self.completed()) and len(found) >= count and found, timeout_s, 0.5,
                        what)

    def close(self) -> None:
        self.reader.close()


def wait_joined(processor) -> None:
    """Until the processor has partitions of the replication topic (its group is formed)."""
    wait_for(lambda: any(r.get("message") == "partitions assigned" and r.get("partitions")
                         for r in log_records(processor)), 60, 0.3, "the processor to join its group")


def seed(pair, keys: list[str], body: bytes) -> None:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda key: pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=body), keys))


def copy_loop(pair, keys: list[str]) -> Throughput:
    """The baseline: GET each object from the source and PUT it to another target bucket, CONCURRENCY at once."""
    bucket = _versioned_target_bucket(pair, "copy-")

    def copy(key: str) -> int:
        body = pair.source.get_object(Bucket=pair.source_bucket, Key=key)["Body"].read()
        pair.target.put_object(Bucket=bucket, Key=key, Body=body)
        return len(body)

    return _timed(copy, keys)


def checked_copy_loop(pair, keys: list[str], size: int) -> Throughput:
    """The copy loop plus what the issue requires of every replica write, still without any queue: a HEAD of the
    key on the target first, and at or above the worker's default threshold a multipart upload (ranged GET ->
    UploadPart of the worker's default part size, one part after the other). Where the CPU is the limit, no
    implementation of the issue can be faster on the same endpoints: this is the goal's ceiling there."""
    bucket = _versioned_target_bucket(pair, "checked-")

    def copy(key: str) -> int:
        try:
            pair.target.head_object(Bucket=bucket, Key=key)
        except ClientError:
            pass  # no replica yet, as expected
        if size >= MPU_THRESHOLD:
            _copy_multipart(pair, bucket, key, size)
            return size
        body = pair.source.get_object(Bucket=pair.source_bucket, Key=key)["Body"].read()
        pair.target.put_object(Bucket=bucket, Key=key, Body=body)
        return len(body)

    return _timed(copy, keys)


def _copy_multipart(pair, bucket: str, key: str, size: int) -> None:
    upload = pair.target.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, size, MPU_PART_SIZE), start=1):
        byte_range = "bytes=%d-%d" % (start, min(start + MPU_PART_SIZE, size) - 1)
        body = pair.source.get_object(Bucket=pair.source_bucket, Key=key, Range=byte_range)["Body"].read()
        etag = pair.target.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    pair.target.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def _versioned_target_bucket(pair, prefix: str) -> str:
    bucket = prefix + pair.target_bucket
    pair.target.create_bucket(Bucket=bucket)
    pair.target.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def _timed(copy, keys: list[str]) -> Throughput:
    """Run copy(key) -> bytes copied for every key, CONCURRENCY at once."""
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        copied = list(pool.map(copy, keys))
    return Throughput(len(copied), sum(copied), time.monotonic() - started)


def run_worker(pair, count: int, timeout_s: float, meter: CpuMeter) -> Throughput:
    """Processor and status processor first (group joined), then the populator; timed from its start to the
    last COMPLETED in the ledger."""
    (processor,) = start_pipeline(pair, populator=False)
    wait_joined(processor)
    ledger = LedgerTail(pair)
    for proc in pair.workers.running:
        meter.processes[proc.label] = proc.pid
    try:
        meter.start()
        started_wall = time.time()
        meter.add("populator", pair.workers.start("populator").pid)
        done = ledger.wait_completed(count, timeout_s, "%d versions COMPLETED" % count)
        cpu = meter.stop()
    finally:
        ledger.close()
    last = max(s.updated_at for s in done) / 1000.0
    first = min(s.updated_at for s in done) / 1000.0
    return Throughput(len(done), sum(s.entry.size for s in done), last - started_wall,
                      round(first - started_wall, 2), cpu)


def compare(state, workdir: Path, name: str, count: int, size: int, guard: DiskGuard, timeout_s: float,
            queue_processor: dict, rtt_ms: float = 0.0) -> dict:
    """Copy loop, then worker, on the same endpoints; with `rtt_ms`, both through RemoteEndpoints."""
    processes = sandbox_processes(state)
    if rtt_ms:
        with RemoteEndpoints(state, rtt_ms, processes) as remote:
            return dict(_compare(remote, processes, workdir, name, count, size, guard, timeout_s, queue_processor),
                        rtt_ms=rtt_ms)
    return _compare(state, processes, workdir, name, count, size, guard, timeout_s, queue_processor)


def _compare(state, processes: dict[str, int], workdir: Path, name: str, count: int, size: int, guard: DiskGuard,
             timeout_s: float, queue_processor: dict) -> dict:
    # scan only (no notifications), once: each listing of big objects costs moto a leaked copy of them all
    pair = make_pair(state, _fresh_dir(workdir, name), notifications=False, scan_interval_s=3600,
                     queue_processor=dict({"concurrency": CONCURRENCY}, **queue_processor))
    keys = ["%s/%05d" % (name, i) for i in range(count)]
    say("%s: seeding %d x %d KiB" % (name, count, size // KIB))
    seed(pair, keys, os.urandom(size))
    guard.check("%s seeded" % name)
    say("%s: copy loop" % name)
    baseline = _metered(processes, lambda: copy_loop(pair, keys))
    guard.check("%s copy loop" % name)
    say("%s: checked copy loop" % name)
    checked = _metered(processes, lambda: checked_copy_loop(pair, keys, size))
    guard.check("%s checked copy loop" % name)
    say("%s: worker" % name)
    try:
        worker = run_worker(pair, count, timeout_s, CpuMeter(dict(processes)))
    finally:
        pair.workers.stop_all()
    guard.check("%s worker" % name)
    result = {"objects": count, "object_bytes": size, "queue_processor": queue_processor,
              "copy_loop": _throughput(baseline), "checked_copy_loop": _throughput(checked),
              "worker": _throughput(worker),
              "ratio": round(worker.objects_per_s / baseline.objects_per_s, 3),
              "ceiling": round(checked.objects_per_s / baseline.objects_per_s, 3),
              "worker_vs_checked": round(worker.objects_per_s / checked.objects_per_s, 3)}
    say("%s: %s" % (name, json.dumps(result)))
    return result


def _metered(processes: dict[str, int], run) -> Throughput:
    meter = CpuMeter(dict(processes))
    meter.start()
    result = run()
    result.cpu_s = meter.stop()
    return result


def latency(state, workdir: Path, sizes: Sizes) -> dict:
    """PUT at a steady rate with notifications; latency = COMPLETED time (stamped by the processor once the replica
    is written) - the moment the source PUT returned, both on this machine's clock."""
    pair = make_pair(state, _fresh_dir(workdir, "latency"), notifications=True, scan_interval_s=3600,
                     queue_processor={"concurrency": CONCURRENCY})
    (processor,) = start_pipeline(pair)
    wait_joined(processor)
    time.sleep(3)  # the populator's first (empty) scan
    count = int(sizes.rate_per_s * sizes.latency_s)
    say("latency: %d PUTs at %g/s" % (count, sizes.rate_per_s))
    put_at: dict[str, float] = {}
    body = os.urandom(4 * KIB)
    start = time.monotonic()
    for index in range(count):
        delay = start + index / sizes.rate_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        version = pair.source.put_object(Bucket=pair.source_bucket, Key="lat/%05d" % index, Body=body)["VersionId"]
        put_at[version] = time.time()
    achieved = count / (time.monotonic() - start)
    ledger = LedgerTail(pair)
    try:
        done = ledger.wait_completed(count, 300, "%d notified versions COMPLETED" % count)
    finally:
        ledger.close()
        pair.workers.stop_all()
    samples = sorted(s.updated_at / 1000.0 - put_at[s.entry.version_id] for s in done if s.entry.version_id in put_at)
    result = {"objects": count, "target_rate_per_s": sizes.rate_per_s, "achieved_rate_per_s": round(achieved, 1),
              "p50_s": round(_percentile(samples, 50), 3), "p90_s": round(_percentile(samples, 90), 3),
              "p99_s": round(_percentile(samples, 99), 3), "max_s": round(samples[-1], 3),
              "mean_s": round(statistics.mean(samples), 3)}
    say("latency: %s" % json.dumps(result))
    return result


def peak_rss(state, workdir: Path, sizes: Sizes, guard: DiskGuard) -> dict:
    """One object of `rss_size`, written by multipart (64 MiB parts, never all in memory here), then copied."""
    pair = make_pair(state, _fresh_dir(workdir, "rss"), notifications=False, scan_interval_s=3600,
                     queue_processor={"concurrency": CONCURRENCY})
    say("rss: writing one %d MiB object" % (sizes.rss_size // MIB))
    _put_multipart(pair, "huge", sizes.rss_size, 64 * MIB)
    guard.check("rss seeded")
    (processor,) = start_pipeline(pair)
    peak = {"kib": 0}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(processor.pid, peak, stop), daemon=True)
    sampler.start()
    started = time.monotonic()
    ledger = LedgerTail(pair)
    try:
        ledger.wait_completed(1, 900, "the big object COMPLETED")
        hwm_kib = _status_kib(processor.pid, "VmHWM")
    finally:
        stop.set()
        ledger.close()
        pair.workers.stop_all()
    guard.check("rss copied")
    result = {"object_mib": sizes.rss_size // MIB, "copy_s": round(time.monotonic() - started, 1),
              "processor_vmhwm_mib": round(hwm_kib / KIB, 1),
              "processor_max_sampled_rss_mib": round(peak["kib"] / KIB, 1)}
    say("rss: %s" % json.dumps(result))
    return result


def _put_multipart(pair, key: str, size: int, part_size: int) -> None:
    s3, bucket = pair.source, pair.source_bucket
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part_body = os.urandom(part_size)
    parts = []
    for number in range(1, size // part_size + 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part_body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def _sample_rss(pid: int, peak: dict, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        try:
            peak["kib"] = max(peak["kib"], _status_kib(pid, "VmRSS"))
        except OSError:
            return


def _status_kib(pid: int, field: str) -> int:
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _percentile(samples: list[float], percent: float) -> float:
    index = min(len(samples) - 1, max(0, round(percent / 100.0 * len(samples)) - 1))
    return samples[index]


def _throughput(result: Throughput) -> dict:
    return dict(asdict(result), seconds=round(result.seconds, 2), objects_per_s=round(result.objects_per_s, 1),
                mb_per_s=round(result.mb_per_s, 2))


def _fresh_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and a 15 s latency run")
    parser.add_argument("--phases", default="small,big,latency,rss")
    parser.add_argument("--out", default=None, help="write the results as JSON here too")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="the remote phase's delay per response")
    parser.add_argument("--part-concurrency", type=int, default=None,
                        help="queueProcessor.partConcurrency of the small/big runs (worker default: 4)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    guard = DiskGuard()
    root = tempfile.mkdtemp(prefix="crr-bench-")
    workdir = Path(root) / "work"
    results = {"sizes": asdict(sizes), "cores": os.cpu_count(), "concurrency": CONCURRENCY}
    tuning = {"partConcurrency": args.part_concurrency} if args.part_concurrency else {}
    phases = args.phases.split(",")
    try:
        for phase in phases:
            with Sandbox(root, "sandbox-" + phase) as state:
                if phase == "small":
                    results["small"] = compare(state, workdir, "small", sizes.small_count, 4 * KIB, guard, 600,
                                               tuning)
                elif phase == "big":
                    results["big"] = compare(state, workdir, "big", sizes.big_count, sizes.big_size, guard, 900,
                                             tuning)
                elif phase == "latency":
                    results["latency"] = latency(state, workdir, sizes)
                elif phase == "rss":
                    results["rss"] = peak_rss(state, workdir, sizes, guard)
                elif phase == "remote":
                    results["remote"] = compare(state, workdir, "remote", sizes.small_count, 4 * KIB, guard, 900,
                                                tuning, rtt_ms=args.rtt_ms)
                else:
                    raise SystemExit("unknown phase %r" % phase)
            guard.check("after %s (sandbox stopped)" % phase)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
