"""CPU per S3 request on the sandbox's moto servers and in a boto3 client, request kind by kind; the data path's
three requests also by the worker's lean client (crr_worker.s3_data).

Why the throughput goal has a ceiling on the sandbox: server and client share the same 2 cores, so what a copy
costs is the sum of what its requests cost. Starts a sandbox of its own; asserts nothing.

Usage: .venv/bin/python tests/bench/request_costs.py [--requests 500]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "worker"))

from botocore.exceptions import ClientError  # noqa: E402
from crr_worker.aws import make_client  # noqa: E402
from crr_worker.s3_data import make_data_client  # noqa: E402

from sandbox import lifecycle  # noqa: E402
from tests.bench.run_bench import CONCURRENCY, _cpu_seconds  # noqa: E402

KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def measure(name: str, server_pid: int, call, keys: list[str]) -> None:
    """Run call(key) for every key, CONCURRENCY at once; print CPU per request on the server and here."""
    server, here, started = _cpu_seconds(server_pid), _cpu_seconds(os.getpid()), time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(call, keys))
    count = len(keys)
    print("%-32s moto %.2f ms/request   client %.2f ms/request   %.1f requests/s" % (
        name, (_cpu_seconds(server_pid) - server) * 1000 / count, (_cpu_seconds(os.getpid()) - here) * 1000 / count,
        count / (time.monotonic() - started)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args(argv)
    state_dir = tempfile.mkdtemp(prefix="crr-request-costs-")
    state = lifecycle.start(state_dir)
    try:
        run(state.source, state.target, ["k/%05d" % i for i in range(args.requests)])
    finally:
        lifecycle.stop(state_dir)
    return 0


def run(source, target, keys: list[str]) -> None:
    """The worker's own client settings (crr_worker.aws.make_client), 4 KiB objects, a versioned bucket each side."""
    src = make_client("s3", source.url, source.region, KEYS, CONCURRENCY, 30)
    dst = make_client("s3", target.url, target.region, KEYS, CONCURRENCY, 30)
    for s3 in (src, dst):
        s3.create_bucket(Bucket="costs")
        s3.put_bucket_versioning(Bucket="costs", VersioningConfiguration={"Status": "Enabled"})
    body = os.urandom(4096)
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    versions: dict[str, str] = {}

    def head_missing(key: str) -> None:
        try:
            dst.head_object(Bucket="costs", Key=key)
        except ClientError:
            pass

    source_pid, target_pid = source.process.pid, target.process.pid
    measure("PUT (source, seeding)", source_pid,
            lambda k: versions.__setitem__(k, src.put_object(Bucket="costs", Key=k, Body=body)["VersionId"]), keys)
    measure("GET", source_pid, lambda k: src.get_object(Bucket="costs", Key=k)["Body"].read(), keys)
    measure("GET VersionId (worker)", source_pid,
            lambda k: src.get_object(Bucket="costs", Key=k, VersionId=versions[k])["Body"].read(), keys)
    measure("HEAD, no such key (check)", target_pid, head_missing, keys)
    measure("PUT with MD5 and metadata", target_pid,
            lambda k: dst.put_object(Bucket="costs", Key=k, Body=body, ContentMD5=md5,
                                     Metadata={"scal-replication-status": "REPLICA",
                                               "scal-version-id": versions[k]}), keys)
    measure("HEAD, key there (check)", target_pid, lambda k: dst.head_object(Bucket="costs", Key=k), keys)
    run_lean(source, target, keys, versions, body, md5)


def run_lean(source, target, keys: list[str], versions: dict[str, str], body: bytes, md5: str) -> None:
    """The data path's GET, HEAD and PUT by the lean client, on the objects run() wrote."""
    src = make_data_client(source.url, source.region, KEYS, CONCURRENCY, 30)
    dst = make_data_client(target.url, target.region, KEYS, CONCURRENCY, 30)
    sha256 = hashlib.sha256(body).hexdigest()
    metadata = {"scal-replication-status": "REPLICA"}

    def get(key: str) -> None:
        with src.get_object("costs", key, versions[key])["Body"] as stream:
            stream.read()

    def head_missing(key: str) -> None:
        try:
            dst.head_object("costs", key + "-missing")
        except ClientError:
            pass

    def put(key: str) -> None:
        dst.put_object("costs", key, io.BytesIO(body), len(body), md5, sha256,
                       Metadata=dict(metadata, **{"scal-version-id": versions[key]}))

    measure("lean GET VersionId (worker)", source.process.pid, get, keys)
    measure("lean HEAD, no such key (check)", target.process.pid, head_missing, keys)
    measure("lean PUT with MD5 and metadata", target.process.pid, put, keys)
    measure("lean HEAD, key there (check)", target.process.pid, lambda k: dst.head_object("costs", k), keys)


if __name__ == "__main__":
    sys.exit(main())
