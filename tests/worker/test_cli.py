"""`crr-worker` as an operator reads it: tables with ISO times, --json for scripts, help everywhere, --version,
distinct exit codes, and read-only commands that create nothing. Against the sandbox's real Kafka broker."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import time
from datetime import datetime, timezone

import crr_worker
import pytest
from crr_worker.cli import _parser
from crr_worker.cli_output import HEADER
from crr_worker.entries import COMPLETED, FAILED, ReplicationEntry, StatusEntry
from crr_worker.kafka_io import ensure_topics, make_producer, send_all
from kafka import KafkaAdminClient

from tests.worker.harness import CRR_WORKER, SITE

pytestmark = pytest.mark.integration

UPDATED = int(datetime(2026, 12, 1, 8, 0, 3, tzinfo=timezone.utc).timestamp() * 1000)
LONG_KEY = "logs/2026/12/01/" + "very-long-object-name-" * 6 + "end.json"


def write_ledger(config, statuses: list[StatusEntry]) -> None:
    """The statuses as the status processor writes them to the ledger topic (created first, as it does)."""
    ensure_topics(config)
    producer = make_producer(config)
    try:
        send_all(producer, config.ledger_topic, [(s.ledger_key, s.to_kafka()[1]) for s in statuses])
    finally:
        producer.close(timeout=5)


def status(bucket: str, key: str, version_id: str, state: str, reason: str = "", target: str = "",
           updated_at: int = UPDATED, enqueued_at: int = UPDATED - 1000, marker: bool = False,
           replay_at: int = 0) -> StatusEntry:
    entry = ReplicationEntry(bucket=bucket, key=key, version_id=version_id, sites=(SITE,), enqueued_at=enqueued_at,
                             is_delete_marker=marker)
    return StatusEntry(entry, SITE, state, reason=reason, target_version_id=target, updated_at=updated_at,
                       replay_at=replay_at)


def columns(lines: list[str]) -> list[list[str]]:
    """Each line cut at the columns where the header's names start: the table is aligned only if every cell sits
    there, whole."""
    starts = [lines[0].index(name) for name in HEADER]
    ends = starts[1:] + [None]
    cut = [[line[a:b].rstrip() for a, b in zip(starts, ends)] for line in lines]
    for line in lines[1:]:
        assert all(a == 0 or line[a - 2:a] == "  " for a in starts), "a cell overflows into the next: %r" % line
    return cut


def test_status_prints_an_aligned_table_with_iso_times_and_whole_long_keys(pair):
    statuses = [status(pair.source_bucket, LONG_KEY, "v1", COMPLETED, target="t1"),
                status(pair.source_bucket, LONG_KEY, "v2", FAILED, reason="NoSuchBucket: the target bucket\ngone",
                       updated_at=UPDATED + 60_000, enqueued_at=UPDATED, marker=True)]
    write_ledger(pair.load(), statuses)
    result = pair.workers.run("status", pair.source_bucket, LONG_KEY)
    assert result.returncode == 0, result.stderr
    assert columns(result.stdout.splitlines()) == [
        list(HEADER),
        [SITE, pair.source_bucket, LONG_KEY, "v1", COMPLETED, "t1", "2026-12-01T08:00:03Z", "-"],
        [SITE, pair.source_bucket, LONG_KEY, "v2 (delete marker)", "FAILED (final)", "-", "2026-12-01T08:01:03Z",
         "NoSuchBucket: the target bucket gone"],
    ]


def test_status_json_prints_one_json_object_per_status_with_epoch_ms_times(pair):
    statuses = [status(pair.source_bucket, "k", "v1", COMPLETED, target="t1"),
                status(pair.source_bucket, "k", "v2", FAILED, reason="boom", enqueued_at=UPDATED)]
    write_ledger(pair.load(), statuses)
    result = pair.workers.run("status", pair.source_bucket, "k", "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [s.to_dict() for s in statuses]
    assert json.loads(result.stdout.splitlines()[0])["updatedAt"] == UPDATED


def test_failed_prints_the_failed_versions_as_a_table_and_as_json_saying_which_wait_for_a_replay(pair):
    done = status(pair.source_bucket, "ok", "v1", COMPLETED, target="t1")
    lost = status(pair.source_bucket, "lost", "v2", FAILED, reason="AccessDenied on PutObject")
    slow = status(pair.source_bucket, "slow", "v3", FAILED, reason="SlowDown; gave up after 5 tries",
                  updated_at=UPDATED + 1000, replay_at=UPDATED + 301_000)
    write_ledger(pair.load(), [done, lost, slow])
    table = pair.workers.run("failed", "--bucket", pair.source_bucket)
    assert table.returncode == 0, table.stderr
    assert columns(table.stdout.splitlines()) == [
        list(HEADER),
        [SITE, pair.source_bucket, "lost", "v2", "FAILED (final)", "-", "2026-12-01T08:00:03Z",
         "AccessDenied on PutObject"],
        [SITE, pair.source_bucket, "slow", "v3", "FAILED (replay 2026-12-01T08:05:04Z)", "-", "2026-12-01T08:00:04Z",
         "SlowDown; gave up after 5 tries"]]
    as_json = pair.workers.run("failed", "--bucket", pair.source_bucket, "--json")
    assert as_json.returncode == 0
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [lost.to_dict(), slow.to_dict()]
    assert [json.loads(line)["replayAt"] for line in as_json.stdout.splitlines()] == [0, UPDATED + 301_000]


def test_status_of_an_unknown_object_or_version_exits_3_naming_it(pair):
    write_ledger(pair.load(), [status(pair.source_bucket, "k", "v1", COMPLETED)])
    unknown_key = pair.workers.run("status", pair.source_bucket, "nope")
    assert unknown_key.returncode == 3 and unknown_key.stdout == ""
    assert unknown_key.stderr.strip() == "crr-worker status: no status recorded for %s/nope" % pair.source_bucket
    unknown_version = pair.workers.run("status", pair.source_bucket, "k", "--version-id", "v9")
    assert unknown_version.returncode == 3 and "%s/k version v9" % pair.source_bucket in unknown_version.stderr


def _topics(pair) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=list(pair.load().kafka.hosts))
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_status_failed_and_retry_on_a_fresh_cluster_create_no_topic_and_find_an_empty_ledger_at_once(pair):
    prefix = pair.config["extensions"]["replication"]["topic"]
    started = time.monotonic()
    unknown = pair.workers.run("status", pair.source_bucket, "k", timeout=60)
    listed = pair.workers.run("failed", timeout=60)
    retried = pair.workers.run("retry", "--all", timeout=60)
    elapsed = time.monotonic() - started
    assert unknown.returncode == 3 and "no status recorded" in unknown.stderr
    assert listed.returncode == 0 and listed.stdout.split() == " ".join(HEADER).split(), listed.stderr
    assert retried.returncode == 0 and retried.stdout == "re-queued 0 version(s)\n", retried.stderr
    assert elapsed < 45  # the ledger reader would wait 120 s for the topic to appear
    assert not [t for t in _topics(pair) if t.startswith(prefix)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", [("status", "b", "k"), ("failed",), ("retry", "--all")])
def test_kafka_unreachable_exits_4_with_one_line_naming_the_hosts_within_the_client_timeout(pair, command):
    hosts = "127.0.0.1:%d" % _closed_port()
    pair.write_config(**{"kafka.hosts": hosts})
    started = time.monotonic()
    result = pair.workers.run(*command, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 4 and result.stdout == ""
    assert result.stderr.splitlines() == ["crr-worker: cannot reach Kafka at %s (kafka.hosts): no answer within "
                                          "10 s" % hosts]
    assert elapsed < 20


def test_version_prints_the_package_version():
    result = subprocess.run([CRR_WORKER, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "crr-worker %s\n" % crr_worker.__version__


def _parsers(parser: argparse.ArgumentParser, name: str = "crr-worker"):
    """(name, parser) of the parser and of every subcommand's, depth first."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _parsers(sub, "%s %s" % (name, command))


def test_every_subcommand_and_option_has_help_text():
    missing = []
    for name, parser in _parsers(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {a.dest for a in action._choices_actions if a.help}
                missing += ["%s %s" % (name, c) for c in action.choices if c not in described]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append("%s %s" % (name, "/".join(action.option_strings) or action.dest))
    assert missing == []
    assert len(list(_parsers(_parser()))) == 11  # crr-worker and its 10 subcommands were all walked
