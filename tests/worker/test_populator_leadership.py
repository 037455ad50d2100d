"""Populators on several hosts: one is active, the others stand by and take over when it is gone."""

from __future__ import annotations

import pytest

from tests.worker.harness import log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration


def _said(proc, message: str) -> bool:
    return any(r.get("message") == message for r in log_records(proc))


def _lead(proc, what: str) -> None:
    wait_for(lambda: _said(proc, "populator active"), 90, 0.5, what)


def test_one_of_two_populators_publishes_and_the_standby_takes_over_when_the_active_one_is_killed(pair):
    pair.source.put_object(Bucket=pair.source_bucket, Key="before", Body=b"1")
    start_pipeline(pair, populator=False)
    first = pair.workers.start("populator", name="populator-first")
    _lead(first, "the first populator to become active")
    second = pair.workers.start("populator", name="populator-second")
    wait_for(lambda: _said(second, "populator standing by"), 60, 0.5, "the second populator to stand by")

    pair.source.put_object(Bucket=pair.source_bucket, Key="while-both-run", Body=b"2")
    pair.wait_all_done(120)
    assert not _said(second, "populator active"), "the second populator took over while the first one ran"
    assert not _said(second, "scan done"), "the standby scanned"

    first.kill()  # SIGKILL: it cannot leave the group; the standby waits out the session timeout
    first.wait()
    _lead(second, "the standby to take over from the killed populator")
    pair.source.put_object(Bucket=pair.source_bucket, Key="after-the-crash", Body=b"3")
    statuses = pair.wait_all_done(120)

    assert {key for key, _ in statuses} >= {"before", "while-both-run", "after-the-crash"}
    copies = target_replicas(pair)
    assert sorted(r["Key"] for replicas in copies.values() for r in replicas) == [
        "after-the-crash", "before", "while-both-run"]


def test_when_the_active_populator_stops_the_standby_takes_over(pair):
    start_pipeline(pair, populator=False)
    first = pair.workers.start("populator", name="populator-first")
    _lead(first, "the first populator to become active")
    second = pair.workers.start("populator", name="populator-second")
    wait_for(lambda: _said(second, "populator standing by"), 60, 0.5, "the second populator to stand by")

    assert pair.workers.terminate(first) == 0
    _lead(second, "the standby to take over from the stopped populator")
    pair.source.put_object(Bucket=pair.source_bucket, Key="after-the-stop", Body=b"1")
    statuses = pair.wait_all_done(120)
    assert [key for key, _ in statuses] == ["after-the-stop"]
