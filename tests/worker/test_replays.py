"""Automatic replays: a version FAILED for a reason that may pass is re-queued by itself, a bounded number of
times, and `crr-worker failed` tells those waiting for a replay from the final ones."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_crr_bucket_replication import StoredReplicationProxy
from tests.worker.harness import start_pipeline, wait_for

pytestmark = pytest.mark.integration
QUICK_BUDGET = {"retry": {"maxRetries": 2, "timeoutS": 30, "backoff": {"min": 10, "max": 50}}}
INTERNAL_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
                  b'<Message>We encountered an internal error. Please try again.</Message></Error>')


class FailingWrites(StoredReplicationProxy):
    """The target, whose object writes answer 500 InternalError while `failing`: a site that answers (HEAD Bucket
    works, so it is no outage) but fails every copy."""

    failing = True

    def handle(self, request):
        if self.failing and request.command == "PUT" and request.path.strip("/").count("/") >= 1:
            length = int(request.headers.get("Content-Length") or 0)
            if length:
                request.rfile.read(length)
            request.send_response(500)
            request.send_header("Content-Length", str(len(INTERNAL_ERROR)))
            request.end_headers()
            request.wfile.write(INTERNAL_ERROR)
            return
        super().handle(request)


def _pair_with_failing_target(pair_factory, sandbox, replays: int):
    proxy = FailingWrites(sandbox.target.url)
    pair = pair_factory(queue_processor=QUICK_BUDGET, site_extra={"endpoint": proxy.url})
    pair.write_config(**{"extensions.replication.replay": {"retries": replays, "delayS": 1}})
    return proxy, pair


def _all_completed(pair, versions: set):
    """The ledger's statuses once every one of `versions` is COMPLETED, else None (a wait_for predicate)."""
    statuses = pair.statuses()
    return statuses if all(v in statuses and statuses[v].status == "COMPLETED" for v in versions) else None


def _put(pair, count: int) -> set:
    return {("k%d" % n, pair.source.put_object(Bucket=pair.source_bucket, Key="k%d" % n, Body=b"x")["VersionId"])
            for n in range(count)}


def test_versions_failed_for_a_passing_reason_are_replayed_and_complete_once_the_target_heals(pair_factory, sandbox):
    proxy, pair = _pair_with_failing_target(pair_factory, sandbox, replays=100)
    try:
        versions = _put(pair, 3)
        start_pipeline(pair)

        def waiting():
            found = pair.workers.run("failed", "--json")
            rows = [json.loads(line) for line in found.stdout.splitlines()]
            return rows if {(r["key"], r["versionId"]) for r in rows if r["replayAt"] > 0} == versions else None

        rows = wait_for(waiting, 120, what="the 3 versions FAILED, each waiting for a replay")
        assert all("InternalError" in r["reason"] and "gave up after 2 tries" in r["reason"] for r in rows)
        proxy.failing = False
        statuses = wait_for(lambda: _all_completed(pair, versions), 120, what="the 3 versions replayed and COMPLETED")
        assert all(statuses[v].entry.replay_count >= 1 for v in versions)  # replayed, not retried by hand
        assert pair.workers.run("failed", "--json").stdout == ""
    finally:
        proxy.close()


def test_replays_are_bounded_and_then_the_version_is_final(pair_factory, sandbox):
    proxy, pair = _pair_with_failing_target(pair_factory, sandbox, replays=2)
    try:
        versions = _put(pair, 2)
        start_pipeline(pair)

        def final():
            statuses = pair.statuses()
            done = {v: statuses[v] for v in versions if v in statuses and statuses[v].status == "FAILED"
                    and not statuses[v].replay_at}
            return done if len(done) == len(versions) else None

        done = wait_for(final, 120, what="the 2 versions FAILED for good after their replays")
        assert {s.entry.replay_count for s in done.values()} == {2}
        table = pair.workers.run("failed").stdout.splitlines()
        assert len(table) == 3 and all("FAILED (final)" in row for row in table[1:])
    finally:
        proxy.close()


def test_a_restarted_status_processor_rebuilds_the_waiting_replays_from_the_ledger(pair_factory, sandbox):
    from tests.worker.harness import SITE, log_records

    proxy, pair = _pair_with_failing_target(pair_factory, sandbox, replays=100)
    pair.write_config(**{"extensions.replication.replay": {"retries": 100, "delayS": 15}})
    try:
        versions = _put(pair, 3)
        first = pair.workers.start("status-processor")
        pair.workers.start("processor", "--site", SITE, name="processor")
        pair.workers.start("populator")

        def waiting():
            statuses = pair.statuses()
            return all(v in statuses and statuses[v].replay_at for v in versions)

        wait_for(waiting, 120, what="the 3 versions FAILED, each waiting for a replay")
        first.kill()  # its waiting replays were in its memory only
        first.wait()
        proxy.failing = False
        second = pair.workers.start("status-processor", name="status-processor-again")
        wait_for(lambda: _all_completed(pair, versions), 120, what="the 3 versions replayed by the new one")
        pair.workers.terminate(second)
        rebuilt = [r for r in log_records(second) if r.get("message") == "replays waiting"]
        assert rebuilt and rebuilt[0]["count"] == 3
    finally:
        proxy.close()
