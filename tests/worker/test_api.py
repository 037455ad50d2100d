"""`crr-worker api` over real HTTP, against the sandbox's Kafka and moto servers and real worker processes."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import requests

from tests.worker.harness import SITE, log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiClient:
    """HTTP calls to one running `crr-worker api`."""

    def __init__(self, port: int, token: str | None = None):
        self.base = "http://127.0.0.1:%d" % port
        self.headers = {"Authorization": "Bearer %s" % token} if token else {}

    def get(self, path: str, **options) -> requests.Response:
        return requests.get(self.base + path, headers=options.pop("headers", self.headers), timeout=30, **options)

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.headers, timeout=60)


def start_api(pair, token: str | None = None) -> ApiClient:
    """Start `crr-worker api` on a free port and wait until it is ready (ledger loaded, Kafka answering); a
    `token` is written to a 0600 file named by api.tokenFile."""
    port = _free_port()
    pair.write_config(**{"api": dict({"host": "127.0.0.1", "port": port}, **_token_file(pair, token))})
    proc = pair.workers.start("api")
    api = ApiClient(port, token)

    def ready():
        assert proc.poll() is None, "crr-worker api exited: %s" % open(proc.log_path).read()[-2000:]
        try:
            return api.get("/_/ready").status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(ready, 60, 0.3, "the API to be ready")
    return api


def _token_file(pair, token: str | None) -> dict:
    if token is None:
        return {}
    path = os.path.join(pair.workers.log_dir, "api-token")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(token + "\n")
    return {"tokenFile": path}


def _metric(text: str, name: str, labels: str = "") -> float | None:
    wanted = "%s{%s}" % (name, labels) if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_healthcheck_is_200_while_kafka_answers_and_503_while_it_does_not(pair):
    api = start_api(pair)
    answer = api.get("/_/healthcheck")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "kafka": "ok"}
    kafka = pair.sandbox.kafka.process
    os.kill(kafka.pid, signal.SIGSTOP)
    try:
        frozen = api.get("/_/healthcheck")
    finally:
        os.kill(kafka.pid, signal.SIGCONT)
    assert frozen.status_code == 503 and frozen.json()["status"] == "error"
    wait_for(lambda: api.get("/_/healthcheck").status_code == 200, 30, 0.5, "healthcheck back to 200")


def test_metrics_count_completions_bytes_and_rpo_and_show_no_lag_after_replication(pair):
    start_pipeline(pair)
    api = start_api(pair)
    sizes = [10, 2000, 70000]
    for index, size in enumerate(sizes):
        pair.source.put_object(Bucket=pair.source_bucket, Key="m%d" % index, Body=os.urandom(size))
    pair.wait_all_done(90)
    site = 'site="%s"' % SITE

    def counted():
        text = api.get("/metrics").text
        return text if _metric(text, "crr_completions_total", site) == 3 else None

    text = wait_for(counted, 30, 0.5, "3 completions in /metrics")
    assert _metric(text, "crr_replicated_bytes_total", site) == sum(sizes)
    assert _metric(text, "crr_failures_total", site) == 0
    assert _metric(text, "crr_rpo_seconds_count", site) == 3
    assert _metric(text, "crr_latency_seconds_count", site) == 3
    assert _metric(text, "crr_versions", '%s,status="COMPLETED"' % site) == 3
    assert _metric(text, "crr_lag_available") == 1
    backlog = [line for line in text.splitlines() if line.startswith("crr_backlog_messages{")]
    assert len(backlog) == 4  # one per partition of the replication topic
    wait_for(lambda: all(_metric(api.get("/metrics").text, "crr_backlog_messages", '%s,partition="%d"' % (site, p))
                         == 0 for p in range(4)), 30, 0.5, "the site's group to commit everything")


def test_object_status_gives_each_site_status_with_the_target_version(pair):
    start_pipeline(pair)
    api = start_api(pair)
    version = pair.source.put_object(Bucket=pair.source_bucket, Key="dir/with space", Body=b"s")["VersionId"]
    pair.wait_all_done(90)
    path = "/_/crr/status/%s/%s" % (pair.source_bucket, requests.utils.quote("dir/with space"))
    answer = wait_for(lambda: (r := api.get(path, params={"versionId": version})).status_code == 200
                      and r.json()[0]["status"] == "COMPLETED" and r, 30, 0.5, "status COMPLETED")
    (status,) = answer.json()
    assert status["site"] == SITE and status["versionId"] == version and status["dataStoreVersionId"]
    assert api.get("/_/crr/status/%s/nothing-here" % pair.source_bucket).status_code == 404


def test_failed_list_and_retry_by_post_complete_after_the_target_bucket_is_recreated(pair):
    pair.target.delete_bucket(Bucket=pair.target_bucket)
    pair.source.put_object(Bucket=pair.source_bucket, Key="lost", Body=b"x")
    start_pipeline(pair)
    api = start_api(pair)
    pair.wait_all_done(90, expect_status="FAILED")
    listed = wait_for(lambda: api.get("/_/crr/failed", params={"site": SITE}).json(), 30, 0.5, "a failed version")
    assert [(f["key"], f["status"]) for f in listed] == [("lost", "FAILED")]
    assert "NoSuchBucket" in listed[0]["reason"]
    assert api.get("/_/crr/failed", params={"bucket": "another-bucket"}).json() == []

    pair.target.create_bucket(Bucket=pair.target_bucket)
    pair.target.put_bucket_versioning(Bucket=pair.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    assert api.post("/_/crr/failed", {}).status_code == 400
    retried = api.post("/_/crr/failed", {"site": SITE, "bucket": pair.source_bucket, "key": "lost",
                                         "versionId": listed[0]["versionId"]})
    assert retried.status_code == 200 and retried.json() == {"requeued": 1}
    statuses = pair.wait_all_done(90)
    assert list(statuses.values())[0].entry.replay_count == 1
    wait_for(lambda: api.get("/_/crr/failed").json() == [], 30, 0.5, "an empty failed list")


def test_pause_keeps_a_site_pending_and_resume_completes_it(pair):
    (processor,) = start_pipeline(pair)
    api = start_api(pair)
    assert api.post("/_/crr/pause/%s" % SITE).json()["paused"] is True
    wait_for(lambda: any(r.get("message") == "site paused" for r in log_records(processor)), 30, 0.3,
             "the processor to pause")
    _assert_held_until_resumed(pair, api, 5)
    assert api.post("/_/crr/pause/no-such-site").status_code == 404


def _assert_held_until_resumed(pair, api, count: int) -> None:
    """`count` new versions stay PENDING while the site is paused, and are replicated once it is resumed."""
    for index in range(count):
        pair.source.put_object(Bucket=pair.source_bucket, Key="held-%d" % index, Body=b"h")
    wait_for(lambda: len(pair.statuses()) == count, 60, 0.5, "%d versions queued" % count)
    time.sleep(8)  # nothing to wait for: time enough for an unpaused processor to copy them several times over
    assert {s.status for s in pair.statuses().values()} == {"PENDING"}
    assert target_replicas(pair) == {}
    assert _metric(api.get("/metrics").text, "crr_site_paused", 'site="%s"' % SITE) == 1

    assert api.post("/_/crr/resume/%s" % SITE).json()["paused"] is False
    pair.wait_all_done(90)
    assert len(target_replicas(pair)) == count


def test_a_processor_started_while_its_site_is_paused_starts_paused(pair):
    api = start_api(pair)
    assert api.post("/_/crr/pause/%s" % SITE).json()["paused"] is True
    (processor,) = start_pipeline(pair)
    wait_for(lambda: any(r.get("message") == "processor started" for r in log_records(processor)), 60, 0.3,
             "the processor to start")
    assert any(r.get("message") == "site paused" for r in log_records(processor))
    _assert_held_until_resumed(pair, api, 3)


def test_the_token_of_api_token_file_is_required_on_every_route(pair):
    api = start_api(pair, token="s3cret-token")
    for path in ("/_/healthcheck", "/metrics", "/_/crr/failed"):
        assert api.get(path, headers={}).status_code == 401
        assert api.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert api.get(path).status_code == 200
    assert requests.post(api.base + "/_/crr/pause/%s" % SITE, timeout=10).status_code == 401
    assert all("s3cret-token" not in open(p.log_path).read() for p in pair.workers.running)
