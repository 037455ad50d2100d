"""A moto server process: S3, IAM, STS and SQS for one account id, on 127.0.0.1."""

from __future__ import annotations

import os
import sys

import requests

from sandbox.processes import SandboxError, free_port, spawn, wait_until
from sandbox.state import S3Endpoint

ACCOUNT_IDS = {"source": "111111111111", "target": "222222222222"}


def start(state_dir: str, name: str) -> S3Endpoint:
    """Start the moto server 'name' with its own account id; returns once it answers S3."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = os.path.join(state_dir, "moto-%s.log" % name)
    process = spawn(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log,
        env={"MOTO_ACCOUNT_ID": ACCOUNT_IDS[name], "AWS_DEFAULT_REGION": "us-east-1"},
    )

    def answers() -> bool:
        if not process.is_alive():
            raise SandboxError("moto server '%s' exited at start (see %s)" % (name, log))
        try:
            return requests.get(url + "/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, 30, "moto server '%s'" % name, log)
    return S3Endpoint(name=name, url=url, account_id=ACCOUNT_IDS[name], process=process, log=log)
