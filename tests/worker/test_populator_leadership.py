"""Populators on several hosts: one is active, the others stand by and take over when it is gone."""

from __future__ import annotations

import signal

import pytest

from tests.worker.harness import log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration


def _said(proc, message: str) -> list[dict]:
    return [r for r in log_records(proc) if r.get("message") == message]


def _start_populators(pair, count: int) -> list:
    """`count` populators, returned once each is in the group and one of them leads."""
    populators = [pair.workers.start("populator", name="populator-%d" % n) for n in range(count)]
    for proc in populators:
        wait_for(lambda p=proc: _said(p, "populators' group rebalanced"), 90, 0.5, "%s to join" % proc.label)
    wait_for(lambda: [p for p in populators if _said(p, "populator active")], 60, 0.5, "a populator to lead")
    return populators


def _leaders(populators) -> list:
    return [p for p in populators if _said(p, "populator active")]


def _replicated_once(pair, keys: list[str]) -> None:
    pair.wait_all_done(120)
    copies = target_replicas(pair)
    assert sorted(r["Key"] for replicas in copies.values() for r in replicas) == sorted(keys)


def test_of_three_populators_one_leads_and_after_it_is_killed_one_other(pair):
    pair.source.put_object(Bucket=pair.source_bucket, Key="before", Body=b"1")
    start_pipeline(pair, populator=False)
    populators = _start_populators(pair, 3)
    pair.source.put_object(Bucket=pair.source_bucket, Key="while-all-run", Body=b"2")
    _replicated_once(pair, ["before", "while-all-run"])
    (leader,) = _leaders(populators)
    standbys = [p for p in populators if p is not leader]
    assert not any(_said(p, "scan done") for p in standbys), "a standby scanned"

    leader.kill()  # SIGKILL: it cannot leave the group; the others wait out its session timeout
    leader.wait()
    wait_for(lambda: _leaders(standbys), 90, 0.5, "a standby to take over from the killed populator")
    pair.source.put_object(Bucket=pair.source_bucket, Key="after-the-crash", Body=b"3")
    _replicated_once(pair, ["before", "while-all-run", "after-the-crash"])
    assert len(_leaders(standbys)) == 1


def test_when_the_active_populator_stops_a_standby_takes_over(pair):
    start_pipeline(pair, populator=False)
    first, second = _start_populators(pair, 2)
    leader, standby = (first, second) if _said(first, "populator active") else (second, first)

    assert pair.workers.terminate(leader) == 0
    wait_for(lambda: _said(standby, "populator active"), 60, 0.5, "the standby to take over from the stopped one")
    pair.source.put_object(Bucket=pair.source_bucket, Key="after-the-stop", Body=b"1")
    _replicated_once(pair, ["after-the-stop"])


def test_a_frozen_leader_stands_by_when_it_wakes_and_publishes_nothing(pair):
    start_pipeline(pair, populator=False)
    first, second = _start_populators(pair, 2)
    leader, standby = (first, second) if _said(first, "populator active") else (second, first)

    leader.send_signal(signal.SIGSTOP)  # no heartbeat, no commit: the group moves the partition
    try:
        wait_for(lambda: _said(standby, "populator active"), 60, 0.5, "the standby to take over")
        pair.source.put_object(Bucket=pair.source_bucket, Key="while-frozen", Body=b"1")
    finally:
        leader.send_signal(signal.SIGCONT)
    woke = _said(leader, "populator active")[-1]["time"]
    wait_for(lambda: [r for r in _said(leader, "populator standing by") if r["time"] > woke], 60, 0.5,
             "the woken leader to stand by")
    _replicated_once(pair, ["while-frozen"])
    assert pair.workers.terminate(leader) == 0
    assert _said(leader, "populator stopped")[-1]["published"] == 0, "the woken leader published"


def test_a_leader_given_its_partition_back_does_not_scan_again_and_one_taking_over_from_another_does(pair):
    start_pipeline(pair, populator=False)
    (first,) = _start_populators(pair, 1)
    wait_for(lambda: _said(first, "scan done"), 60, 0.5, "the first populator's scan")

    second = pair.workers.start("populator", name="populator-1")
    wait_for(lambda: _said(second, "populators' group rebalanced"), 90, 0.5, "the second populator to join")
    # the eager rebalance took the partition from the leader and gave it back
    wait_for(lambda: len(_said(first, "populators' group rebalanced")) >= 2, 30, 0.5, "the leader's rebalance")
    assert all(r["holds_partition"] for r in _said(first, "populators' group rebalanced"))
    pair.source.put_object(Bucket=pair.source_bucket, Key="after-the-join", Body=b"1")
    _replicated_once(pair, ["after-the-join"])
    assert len(_said(first, "scan done")) == 1, "the leader listed every bucket again after a rebalance"
    assert not _said(second, "scan done")

    assert pair.workers.terminate(first) == 0
    wait_for(lambda: _said(second, "scan done"), 60, 0.5, "the populator that took over to scan")
