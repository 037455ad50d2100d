"""Benchmark of the worker against a plain GET->PUT copy loop and rclone, on a sandbox of its own (Kafka + two moto
servers).

Not a test: it measures and prints, it asserts nothing. Phases, each on a fresh sandbox (moto keeps a temp-file
copy of every object >= 5 MiB per ListObjectVersions until it stops, so big objects never share a sandbox); with
--quick, all phases share one sandbox (a Kafka start is ~15 s of a two-minute budget):

  small     N x 4 KiB, same concurrency: the copy loop (the goal's baseline), the checked copy loop (the same
            plus the target HEAD and, >= 64 MiB, the multipart upload the issue requires: the goal's ceiling when
            CPU-bound), `rclone copy` (a tool users compare with), and the worker (populator scan + processor +
            status processor)
  big       M x 64 MiB, same comparison
  latency   PUT on the source at a steady rate with SQS notifications -> COMPLETED (replica written) on the target
  rss       peak RSS (VmHWM) of the processor while it copies one big object
  remote    `small` with both endpoints behind a proxy that holds back each response by --rtt-ms (default 30):
            endpoints across a WAN, where a copy waits on the network rather than on the 2 cores
  scaleout  the worker alone behind the same proxy, with 1 then 2 processors of one site (same concurrency each)
            on a replication topic of SCALEOUT_PARTITIONS partitions, SCALEOUT_CONCURRENCY copies per processor

Usage: .venv/bin/python tests/bench/run_bench.py [--quick] [--phases small,big,latency,rss,remote,scaleout]
       [--rtt-ms 30] [--out results.json] [--plots DIR]
       .venv/bin/python tests/bench/run_bench.py --from-json results.json --plots DIR
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import datetime
import json
import os
import platform
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
MPU_THRESHOLD = 128 * MIB  # the worker's defaults (queueProcessor.mpuThreshold, mpuPartSize)
MPU_PART_SIZE = 16 * MIB
DISK_BUDGET_BYTES = 20 * 1024 * MIB
SCALEOUT_PARTITIONS = 4  # enough for two processors to hold two each
# A processor at CONCURRENCY copies already fills the 2 cores at 30 ms per response: with 8, the scaleout phase
# would measure the CPU, not how a second processor adds to the first.
SCALEOUT_CONCURRENCY = 2
DEFAULT_PHASES = "small,big,latency,rss,remote,scaleout"
RCLONE_HINT = "rclone is not installed: `apt-get install -y rclone` as root (Debian), or https://rclone.org/install/"


PACED_PUTTERS = 4  # threads of the latency phase's PUTs


@dataclass(frozen=True)
class Sizes:
    small_count: int
    big_count: int
    big_size: int
    rate_per_s: float
    latency_s: float
    rss_size: int
    scaleout_count: int


FULL = Sizes(small_count=2000, big_count=20, big_size=64 * MIB, rate_per_s=50, latency_s=60, rss_size=1024 * MIB,
             scaleout_count=1000)
QUICK = Sizes(small_count=200, big_count=2, big_size=64 * MIB, rate_per_s=50, latency_s=10, rss_size=64 * MIB,
              scaleout_count=80)


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

    Everything shares the same cores, so a side's throughput is bounded by the CPU its whole chain needs. `idle`
    (name -> CPU-s per s) is taken off: the broker's own housekeeping is not the cost of any side.
    """

    def __init__(self, processes: dict[str, int], idle: dict[str, float] | None = None):
        self.processes = processes  # name -> pid
        self.idle = idle or {}
        self.before: dict[str, float] = {}
        self.started = 0.0

    def start(self) -> None:
        self.before = {name: _cpu_seconds(pid) for name, pid in self.processes.items()}
        self.started = time.monotonic()

    def add(self, name: str, pid: int) -> None:
        """A process started after start(): all its CPU counts."""
        self.processes[name] = pid
        self.before[name] = 0.0

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        used = {name: round(max(0.0, _cpu_seconds(pid) - self.before[name] - self.idle.get(name, 0.0) * elapsed), 2)
                for name, pid in self.processes.items()}
        return dict(used, total=round(sum(used.values()), 2))


def _cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sandbox_processes(state) -> dict[str, int]:
    """The broker's and both moto servers' pids, plus this process, the `client`: the loops' S3 client, the source's
    replication proxy (harness.StoredReplicationProxy, a thread here) and the ledger reader."""
    names = {"kafka": "broker", "source": "moto-source", "target": "moto-target"}
    return dict({names.get(name, name): ref.pid for name, ref in state.services()}, client=os.getpid())


def idle_rates(processes: dict[str, int], run) -> dict[str, float]:
    """The broker's CPU-s per second while run() (which does not touch Kafka) runs: its idle cost."""
    pid, started = processes["broker"], time.monotonic()
    before = _cpu_seconds(pid)
    run()
    return {"broker": round((_cpu_seconds(pid) - before) / (time.monotonic() - started), 4)}


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


def wait_joined(processors: list, partitions: int) -> None:
    """Until the processors' latest assignments of the replication topic cover its `partitions`, each holding some:
    the group is formed, with every processor in it."""
    def latest(processor) -> list:
        found = [r["partitions"] for r in log_records(processor)
                 if r.get("message") == "partitions assigned" and "site" in r]
        return found[-1] if found else []

    wait_for(lambda: all(latest(p) for p in processors) and sum(len(latest(p)) for p in processors) == partitions,
             60, 0.3, "%d processor(s) to share %d partitions" % (len(processors), partitions))


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


def ensure_rclone() -> str | None:
    """rclone's path; installed from Debian when missing and running as root. None, said aloud, when it stays
    missing: the rclone side is then reported as skipped."""
    if not shutil.which("rclone") and os.geteuid() == 0:
        say("rclone missing: apt-get install -y rclone")
        for command in (["apt-get", "install", "-y", "rclone"], ["apt-get", "update"],
                        ["apt-get", "install", "-y", "rclone"]):
            if subprocess.run(command, stdout=subprocess.DEVNULL, check=False).returncode == 0 and shutil.which(
                    "rclone"):
                break
    found = shutil.which("rclone")
    if not found:
        say("rclone side skipped: " + RCLONE_HINT)
    return found


def rclone_copy(pair, keys: list[str], size: int, rclone: str, meter: CpuMeter, log_dir: Path) -> Throughput:
    """`rclone copy --transfers CONCURRENCY` from the source bucket (holding only the seeded keys) to a fresh
    versioned target bucket, through the same endpoints as the loops; its CPU is read from /proc before it is
    reaped. Fails unless the target then holds exactly the seeded keys."""
    bucket = _versioned_target_bucket(pair, "rclone-")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "RCLONE_"))}
    env.update(_rclone_remote("SRC", pair, pair.source), **_rclone_remote("DST", pair, pair.target))
    command = [rclone, "copy", "--transfers", str(CONCURRENCY), "--log-level", "ERROR",
               "src:" + pair.source_bucket, "dst:" + bucket]
    with open(log_dir / "rclone.log", "ab") as log:
        meter.start()
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    meter.add("rclone", proc.pid)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # a zombie still has its /proc/<pid>/stat
    seconds, cpu = time.monotonic() - started, meter.stop()
    if proc.wait():
        tail = (log_dir / "rclone.log").read_text()[-2000:]
        raise RuntimeError("rclone copy failed (%d): %s" % (proc.returncode, tail))
    copied = _listed_keys(pair.target, bucket)
    if copied != set(keys):
        raise RuntimeError("rclone copied %d objects, %d seeded" % (len(copied), len(keys)))
    return Throughput(len(copied), len(copied) * size, seconds, cpu_s=cpu)


def _rclone_remote(name: str, pair, s3) -> dict[str, str]:
    """An rclone S3 remote in environment variables: the client's endpoint, the pair's credentials. (The caller
    drops AWS_*: rclone's SDK fails on an AWS_CA_BUNDLE, which plain-HTTP endpoints do not need.)"""
    credentials = configparser.ConfigParser()
    credentials.read(pair.config["extensions"]["replication"]["source"]["credentials"]["file"])
    profile = credentials["crr"]
    prefix = "RCLONE_CONFIG_%s_" % name
    return {prefix + "TYPE": "s3", prefix + "PROVIDER": "Other", prefix + "ENDPOINT": s3.meta.endpoint_url,
            prefix + "REGION": "us-east-1", prefix + "FORCE_PATH_STYLE": "true", prefix + "ENV_AUTH": "false",
            prefix + "ACCESS_KEY_ID": profile["aws_access_key_id"],
            prefix + "SECRET_ACCESS_KEY": profile["aws_secret_access_key"]}


def _listed_keys(s3, bucket: str) -> set[str]:
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


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


def run_worker(pair, count: int, timeout_s: float, meter: CpuMeter, processors: int = 1) -> Throughput:
    """Processors and status processor first (group formed), then the populator; timed from its start to the
    last COMPLETED in the ledger."""
    started = start_pipeline(pair, processors=processors, populator=False)
    wait_joined(started, pair.config["kafka"]["partitions"])
    ledger = LedgerTail(pair)
    for index, proc in enumerate(pair.workers.running):  # the second processor is processor-2
        same = sum(1 for earlier in pair.workers.running[:index] if earlier.label == proc.label)
        meter.processes[proc.label + ("-%d" % (same + 1) if same else "")] = proc.pid
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


@dataclass(frozen=True)
class Setup:
    """What every phase gets: the sandbox, where to write, the sizes, the disk guard and the options."""

    state: object
    workdir: Path
    sizes: Sizes
    guard: DiskGuard
    rtt_ms: float
    tuning: dict  # queueProcessor settings of the small/big/remote workers
    rclone: str | None
    scaleout_concurrency: int = SCALEOUT_CONCURRENCY


def compare(setup: Setup, name: str, count: int, size: int, timeout_s: float, remote: bool = False) -> dict:
    """Copy loop, checked copy loop, rclone, then worker, on the same endpoints; `remote`: all through
    RemoteEndpoints."""
    processes = sandbox_processes(setup.state)
    if remote:
        with RemoteEndpoints(setup.state, setup.rtt_ms, processes) as state:
            return dict(_compare(setup, state, processes, name, count, size, timeout_s), rtt_ms=setup.rtt_ms)
    return _compare(setup, setup.state, processes, name, count, size, timeout_s)


def _compare(setup: Setup, state, processes: dict[str, int], name: str, count: int, size: int,
             timeout_s: float) -> dict:
    # scan only (no notifications), once: each listing of big objects costs moto a leaked copy of them all
    directory = _fresh_dir(setup.workdir, name)
    pair = make_pair(state, directory, notifications=False, scan_interval_s=3600,
                     queue_processor=dict({"concurrency": CONCURRENCY}, **setup.tuning))
    keys = ["%s/%05d" % (name, i) for i in range(count)]
    say("%s: seeding %d x %d KiB" % (name, count, size // KIB))
    idle = idle_rates(processes, lambda: seed(pair, keys, os.urandom(size)))
    setup.guard.check("%s seeded" % name)
    sides = {}
    for side, run in (("copy_loop", lambda meter: _metered(meter, lambda: copy_loop(pair, keys))),
                      ("checked_copy_loop", lambda meter: _metered(meter, lambda: checked_copy_loop(pair, keys, size))),
                      ("rclone", lambda meter: _rclone_side(setup, pair, keys, size, meter, directory)),
                      ("worker", lambda meter: _worker_side(pair, count, timeout_s, meter))):
        say("%s: %s" % (name, side.replace("_", " ")))
        sides[side] = run(CpuMeter(dict(processes), idle))
        setup.guard.check("%s %s" % (name, side))
    result = dict({"objects": count, "object_bytes": size, "queue_processor": setup.tuning,
                   "broker_idle_cpu_per_s": idle["broker"], "source_listing_s": listing_seconds(pair)},
                  **sides, **_ratios(sides))
    say("%s: %s" % (name, json.dumps(_ratios(sides))))
    return result


def listing_seconds(pair) -> float:
    """How long one ListObjectVersions of the seeded source bucket takes, all pages: what the worker's scan waits
    for before it publishes (moto copies every stored body on each call); the loops list nothing, rclone lists
    with ListObjectsV2."""
    started = time.monotonic()
    for _ in pair.source.get_paginator("list_object_versions").paginate(Bucket=pair.source_bucket):
        pass
    return round(time.monotonic() - started, 2)


def _metered(meter: CpuMeter, run) -> dict:
    meter.start()
    result = run()
    result.cpu_s = meter.stop()
    return _throughput(result)


def _rclone_side(setup: Setup, pair, keys: list[str], size: int, meter: CpuMeter, directory: Path) -> dict:
    if not setup.rclone:
        return {"skipped": RCLONE_HINT}
    return _throughput(rclone_copy(pair, keys, size, setup.rclone, meter, directory))


def _worker_side(pair, count: int, timeout_s: float, meter: CpuMeter, processors: int = 1) -> dict:
    try:
        return _throughput(run_worker(pair, count, timeout_s, meter, processors))
    finally:
        pair.workers.stop_all()


def _ratios(sides: dict) -> dict:
    """Each side's objects/s against the copy loop's (and the worker's against the checked loop's and rclone's)."""
    def rate(side: str) -> float | None:
        return sides[side].get("objects_per_s")

    def ratio(a: str, b: str) -> float | None:
        return round(rate(a) / rate(b), 3) if rate(a) and rate(b) else None

    return {"ratio": ratio("worker", "copy_loop"), "ceiling": ratio("checked_copy_loop", "copy_loop"),
            "rclone_vs_loop": ratio("rclone", "copy_loop"), "worker_vs_checked": ratio("worker", "checked_copy_loop"),
            "worker_vs_rclone": ratio("worker", "rclone")}


def scale_out(setup: Setup, count: int, timeout_s: float) -> dict:
    """The worker with 1, then 2 processors of one site (each `scaleout_concurrency` copies at once), every response
    held back by --rtt-ms: where one processor waits on the network, a second one should almost double the rate."""
    processes = sandbox_processes(setup.state)
    with RemoteEndpoints(setup.state, setup.rtt_ms, processes) as state:
        runs = {"processors_%d" % n: _scaled_run(setup, state, processes, count, n, timeout_s) for n in (1, 2)}
    one, two = (runs[key]["objects_per_s"] for key in ("processors_1", "processors_2"))
    result = dict({"objects": count, "object_bytes": 4 * KIB, "rtt_ms": setup.rtt_ms,
                   "concurrency": setup.scaleout_concurrency,
                   "partitions": SCALEOUT_PARTITIONS}, **runs, ratio=round(two / one, 3))
    say("scaleout: %.1f -> %.1f objects/s, %.2fx" % (one, two, two / one))
    return result


def _scaled_run(setup: Setup, state, processes: dict[str, int], count: int, processors: int,
                timeout_s: float) -> dict:
    name = "scaleout-%d" % processors
    pair = make_pair(state, _fresh_dir(setup.workdir, name), notifications=False, scan_interval_s=3600,
                     queue_processor={"concurrency": setup.scaleout_concurrency})
    pair.write_config(**{"kafka.partitions": SCALEOUT_PARTITIONS})
    keys = ["%s/%05d" % (name, i) for i in range(count)]
    say("%s: seeding %d x 4 KiB, then the worker with %d processor(s)" % (name, count, processors))
    idle = idle_rates(processes, lambda: seed(pair, keys, os.urandom(4 * KIB)))
    return _worker_side(pair, count, timeout_s, CpuMeter(dict(processes), idle), processors)


def latency(setup: Setup) -> dict:
    """PUT at a steady rate with notifications; latency = COMPLETED time (stamped by the processor once the replica
    is written) - the moment the source PUT returned, both on this machine's clock."""
    sizes = setup.sizes
    pair = make_pair(setup.state, _fresh_dir(setup.workdir, "latency"), notifications=True, scan_interval_s=3600,
                     queue_processor={"concurrency": CONCURRENCY})
    processors = start_pipeline(pair)
    wait_joined(processors, pair.config["kafka"]["partitions"])
    time.sleep(3)  # the populator's first (empty) scan
    count = int(sizes.rate_per_s * sizes.latency_s)
    say("latency: %d PUTs at %g/s" % (count, sizes.rate_per_s))
    put_at, achieved = paced_puts(pair, count, sizes.rate_per_s)
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
    return dict(result, samples_s=[round(sample, 4) for sample in samples])


def paced_puts(pair, count: int, rate_per_s: float) -> tuple[dict[str, float], float]:
    """PUT `count` 4 KiB objects, the n-th not before n / rate_per_s, from PACED_PUTTERS threads (one PUT with
    notifications takes moto longer than 1/50 s); returns version id -> when its PUT returned, and the rate
    reached."""
    put_at: dict[str, float] = {}
    body = os.urandom(4 * KIB)
    start = time.monotonic()

    def put(index: int) -> None:
        delay = start + index / rate_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        version = pair.source.put_object(Bucket=pair.source_bucket, Key="lat/%05d" % index, Body=body)["VersionId"]
        put_at[version] = time.time()

    with ThreadPoolExecutor(PACED_PUTTERS) as pool:
        list(pool.map(put, range(count)))
    return put_at, count / (time.monotonic() - start)


def peak_rss(setup: Setup) -> dict:
    """One object of `rss_size`, written by multipart (64 MiB parts, never all in memory here), then copied."""
    sizes, guard = setup.sizes, setup.guard
    pair = make_pair(setup.state, _fresh_dir(setup.workdir, "rss"), notifications=False, scan_interval_s=3600,
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
    """The side's figures, with its CPU per replicated version by process (ms): what each copy cost, where."""
    per_version = {name: round(seconds * 1000 / result.objects, 2) for name, seconds in (result.cpu_s or {}).items()}
    return dict(asdict(result), seconds=round(result.seconds, 2), objects_per_s=round(result.objects_per_s, 1),
                mb_per_s=round(result.mb_per_s, 2), cpu_ms_per_version=per_version)


def _fresh_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


PHASES = {
    "small": lambda setup: compare(setup, "small", setup.sizes.small_count, 4 * KIB, 600),
    "big": lambda setup: compare(setup, "big", setup.sizes.big_count, setup.sizes.big_size, 900),
    "latency": latency,
    "rss": peak_rss,
    "remote": lambda setup: compare(setup, "remote", setup.sizes.small_count, 4 * KIB, 900, remote=True),
    "scaleout": lambda setup: scale_out(setup, setup.sizes.scaleout_count, 900),
}


def run_metadata() -> dict:
    """Where and when the figures were taken: enough to tell two runs apart and to judge their noise."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)

    dirty = git("diff", "--quiet", "HEAD").returncode != 0
    return {"commit": git("rev-parse", "--short", "HEAD").stdout.strip() + ("-dirty" if dirty else ""),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load_average_start": [round(load, 2) for load in os.getloadavg()], "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def run_phases(args, sizes: Sizes, results: dict) -> None:
    """Each phase on a fresh sandbox, or all on one with --quick; results[phase] as each ends."""
    guard = DiskGuard()
    root = tempfile.mkdtemp(prefix="crr-bench-")
    tuning = {"partConcurrency": args.part_concurrency} if args.part_concurrency else {}
    phases = args.phases.split(",")
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit("unknown phase(s): %s" % ", ".join(sorted(unknown)))
    rclone = ensure_rclone() if {"small", "big", "remote"} & set(phases) else None
    groups = [phases] if args.quick else [[phase] for phase in phases]
    try:
        for group in groups:
            with Sandbox(root, "sandbox-" + group[0]) as state:
                setup = Setup(state, Path(root) / "work", sizes, guard, args.rtt_ms, tuning, rclone,
                              args.scaleout_concurrency)
                for phase in group:
                    results[phase] = PHASES[phase](setup)
            guard.check("after %s (sandbox stopped)" % ",".join(group))
    finally:
        if args.keep:
            say("kept: %s (the workers' logs are under work/)" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def render_plots(results: dict, directory: str) -> None:
    from tests.bench import plots  # matplotlib only when plots are asked for

    for path in plots.render(results, directory):
        say("plot: %s" % path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one sandbox for all phases")
    parser.add_argument("--phases", default=DEFAULT_PHASES)
    parser.add_argument("--out", default=None, help="write the results as JSON here too")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="the remote and scaleout phases' delay per response")
    parser.add_argument("--part-concurrency", type=int, default=None,
                        help="queueProcessor.partConcurrency of the small/big/remote runs (worker default: 4)")
    parser.add_argument("--scaleout-concurrency", type=int, default=SCALEOUT_CONCURRENCY,
                        help="queueProcessor.concurrency of each processor in the scaleout phase")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs) after the run")
    parser.add_argument("--plots", default=None, metavar="DIR", help="render PNGs here (needs matplotlib)")
    parser.add_argument("--from-json", default=None, metavar="FILE", help="no run: plot a saved result (--plots)")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as saved:
            render_plots(json.load(saved), args.plots or ".")
        return 0
    if args.plots:
        from tests.bench import plots

        plots.require_matplotlib()  # fail now, not after the run
    sizes = QUICK if args.quick else FULL
    results = dict(run_metadata(), quick=args.quick, sizes=asdict(sizes), concurrency=CONCURRENCY)
    started = time.monotonic()
    run_phases(args, sizes, results)
    results.update(load_average_end=[round(load, 2) for load in os.getloadavg()],
                   wall_s=round(time.monotonic() - started, 1))
    shown = dict(results)
    if "latency" in shown:
        shown["latency"] = {k: v for k, v in shown["latency"].items() if k != "samples_s"}
    print(json.dumps(shown, indent=2))
    if args.out:
        with open(args.out, "w") as out:
            json.dump(results, out, indent=2)
    if args.plots:
        render_plots(results, args.plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
