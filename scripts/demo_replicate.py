"""The seeds' "Test Object Replication Example" on the sandbox: put an object on the source,
show its replica on the target and the worker's status for it. Exits non-zero if it does not replicate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.lifecycle import DEFAULT_STATE_DIR  # noqa: E402
from sandbox.processes import SandboxError, wait_until  # noqa: E402
from sandbox.state import SandboxState  # noqa: E402

SOURCE_BUCKET, TARGET_BUCKET = "source-bucket", "target-bucket"
TIMEOUT_S = 120


def _s3(endpoint, key):
    return boto3.client("s3", endpoint_url=endpoint.url, region_name=endpoint.region,
                        aws_access_key_id=key, aws_secret_access_key=key + "-secret")


def _replica(target, key, version_id):
    try:
        head = target.head_object(Bucket=TARGET_BUCKET, Key=key)
    except target.exceptions.ClientError:
        return None
    return head if head["Metadata"].get("scal-version-id") == version_id else None


def _status(worker, key, version_id):
    """The worker's status lines for the version once all are COMPLETED, else None.

    The command and environment are those demo.yml handed to the sandbox (worker-commands.json).
    """
    cli = worker["commands"]["status-processor"][:-1]  # crr-worker --config FILE
    proc = subprocess.run([*cli, "status", SOURCE_BUCKET, key, "--version-id", version_id, "--json"],
                          capture_output=True, text=True, env={**os.environ, **worker["environment"]})
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return lines if lines and all(s["status"] == "COMPLETED" for s in lines) else None


def main(state_dir: str) -> int:
    state = SandboxState.load(state_dir)
    with open(os.path.join(state_dir, "worker-commands.json")) as src:
        worker = json.load(src)
    source, target = _s3(state.source, "sandbox-source"), _s3(state.target, "sandbox-target")
    key = "demo/hello-%s.txt" % time.strftime("%Y%m%dT%H%M%S")
    put = source.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=b"replicated by crr-worker\n",
                            ContentType="text/plain", Metadata={"demo": "yes"})
    print("$ put-object --bucket %s --key %s   (source %s)" % (SOURCE_BUCKET, key, state.source.url))
    print("  VersionId: %s" % put["VersionId"])
    logs = os.path.join(state_dir, "worker-*.log")
    try:
        head = wait_until(lambda: _replica(target, key, put["VersionId"]), TIMEOUT_S, "the replica", logs, 1)
        print("$ head-object --bucket %s --key %s   (target %s)" % (TARGET_BUCKET, key, state.target.url))
        print(json.dumps({k: head[k] for k in ("ContentLength", "ContentType", "VersionId", "Metadata")}, indent=2))
        statuses = wait_until(lambda: _status(worker, key, put["VersionId"]), TIMEOUT_S, "status COMPLETED", logs, 1)
    except SandboxError as exc:
        sys.exit("demo: %s" % exc)
    print("$ crr-worker status %s %s --json" % (SOURCE_BUCKET, key))
    for status in statuses:
        print(json.dumps(status))
    print("\nReplicated: the target holds a REPLICA carrying the source version id %s." % put["VersionId"])
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ.get("CRR_SANDBOX_STATE_DIR") or DEFAULT_STATE_DIR))
