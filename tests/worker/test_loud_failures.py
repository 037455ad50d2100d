"""A version no processor can replicate is FAILED with the reason, not left PENDING or dropped in silence: its rule
names a StorageClass that is no configured site (e.g. AWS's STANDARD), or no StorageClass while several sites
and no default are configured. The ledger holds it FAILED for the site the rule names (for the rule's
`(no site: rule <id>)` placeholder when it names none), the populator logs it once per bucket and rule, and the
API counts it in `crr_unroutable_versions_total{bucket,rule}`. `retry` re-queues it for that site: FAILED again at
the populator's next scan, unless the site is configured by then, whose processor then replicates it."""

from __future__ import annotations

import json
import logging

import pytest
from crr_worker.entries import FAILED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.metrics import ReplicationMetrics
from crr_worker.sources.base import Change

from tests.worker.harness import SITE, log_records, wait_for
from tests.worker.test_api import _metric, start_api
from tests.worker.test_rules_as_s3 import (
    OTHER_SITE,
    RulesSource,
    ledger_statuses,
    populator_of,
    put_rules,
    rule,
    sent,
    versions,
)

UNROUTABLE_LOG = "versions of a rule go to a site no processor serves: they are FAILED"


def statuses(populator) -> list[StatusEntry]:
    return [StatusEntry.from_kafka(e[3]) for e in populator.producer.events if e[:2] == ("send", "status")]


def test_versions_of_a_rule_whose_storage_class_names_no_configured_site_are_failed_with_the_reason():
    populator = populator_of(RulesSource([rule("archive", "STANDARD")], {"k": versions("k", "v1")}), sites=("aws1",))
    assert populator.handle([Change("src", "k")]) == 0
    assert sent(populator) == []
    (failed,) = statuses(populator)
    assert (failed.site, failed.status, failed.entry.version_id) == ("STANDARD", FAILED, "v1")
    assert failed.reason == (
        'unroutable: rule "archive" of bucket src names site STANDARD (its destination StorageClass is '
        "'STANDARD'), which is not in destination.bootstrapList (aws1): a rule's StorageClass names the sites to "
        "replicate to")
    assert populator.handle([Change("src", "k")]) == 0 and len(statuses(populator)) == 1  # known: failed once


def test_versions_of_a_rule_naming_no_site_with_two_sites_and_no_default_are_failed_for_the_rule():
    populator = populator_of(RulesSource([rule("all", "")], {"k": versions("k", "v1")}), sites=("aws1", "aws2"))
    assert populator.handle([Change("src", "k")]) == 0
    (failed,) = statuses(populator)
    assert (failed.site, failed.status) == ("(no site: rule all)", FAILED)
    assert failed.reason == ('unroutable: rule "all" of bucket src names no site: it has no destination '
                             "StorageClass, and no site of destination.bootstrapList (aws1, aws2) is marked default")


def test_a_rule_naming_a_served_and_an_unknown_site_queues_the_version_for_one_and_fails_it_for_the_other():
    populator = populator_of(RulesSource([rule("both", "aws1,STANDARD")], {"k": versions("k", "v1")}), sites=("aws1",))
    assert populator.handle([Change("src", "k")]) == 1
    assert [e.sites for e in sent(populator)] == [("aws1",)]
    assert [(s.site, s.status) for s in statuses(populator)] == [("aws1", PENDING), ("STANDARD", FAILED)]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_an_unroutable_rule_is_logged_once_per_bucket_and_rule():
    source = RulesSource([rule("archive", "STANDARD", prefix="a"), rule("cold", "GLACIER", prefix="b")],
                         {key: versions(key, key + "1", key + "2") for key in ("a1", "a2", "b1")})
    populator = populator_of(source, sites=("aws1",))
    logger, handler = logging.getLogger("crr_worker.populator"), _Records()
    logger.addHandler(handler)
    try:
        populator.handle([Change("src", "a1"), Change("src", "b1")])
        populator.handle([Change("src", "a2")])
    finally:
        logger.removeHandler(handler)
    assert len(statuses(populator)) == 6
    logged = [(r.fields["bucket"], r.fields["rule"], r.fields["site"]) for r in handler.records
              if r.getMessage() == UNROUTABLE_LOG]
    assert logged == [("src", "archive", "STANDARD"), ("src", "cold", "GLACIER")]


class _Ledger:
    """The ledger records a populator's first scan reads."""

    def __init__(self, *statuses: StatusEntry):
        self.records = [(s.ledger_key, s.to_kafka()[1]) for s in statuses]

    def batches_to_end(self, stop):
        yield self.records


def test_a_version_pending_for_a_site_no_processor_serves_is_failed_in_its_generation_at_the_scan():
    source = RulesSource([rule("archive", "STANDARD")], {})
    source.buckets = lambda: []
    populator = populator_of(source, sites=("aws1",))
    retried = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("STANDARD",), replay_count=1)
    served = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("aws1",))
    populator.ledger = _Ledger(StatusEntry(retried, "STANDARD", PENDING), StatusEntry(served, "aws1", PENDING))
    populator.scan()
    (failed,) = statuses(populator)
    assert (failed.site, failed.status, failed.entry.enqueued_at) == ("STANDARD", FAILED, retried.enqueued_at)
    assert failed.supersedes(StatusEntry(retried, "STANDARD", PENDING))
    assert failed.reason.startswith('unroutable: rule "archive" of bucket src names site STANDARD')


def test_the_api_counts_unroutable_failures_by_bucket_and_rule():
    metrics = ReplicationMetrics()
    entry = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("STANDARD",))
    populator = populator_of(RulesSource([rule("ar\"chive", "STANDARD")], {"k": versions("k", "v1", "v2")}),
                             sites=("aws1",))
    populator.handle([Change("src", "k")])
    for status in statuses(populator) + [StatusEntry(entry, "aws1", FAILED, reason="AccessDenied")]:
        metrics.observe(status)
    lines = metrics.render()
    assert 'crr_unroutable_versions_total{bucket="src",rule="ar\\"chive"} 2' in lines
    assert len([line for line in lines if line.startswith("crr_unroutable_versions_total{")]) == 1
    assert 'crr_failures_total{site="STANDARD"} 2' in lines


# --- across the pipeline ---------------------------------------------------------------------------------------------

def _status_of(pair, site: str, key: str) -> StatusEntry | None:
    """The ledger's status of the key's (one) version on `site`."""
    return next((s for (s_site, s_key, _), s in ledger_statuses(pair).items() if (s_site, s_key) == (site, key)), None)


def _failed_for(pair, site: str, key: str, replays: int = 0) -> StatusEntry:
    """The key's FAILED status on `site` of the given replay, once the ledger holds it."""
    def found():
        status = _status_of(pair, site, key)
        ready = status is not None and status.status == FAILED and status.entry.replay_count == replays
        return status if ready else None

    return wait_for(found, 90, 0.5, "%s to be FAILED on %s (replay %d)" % (key, site, replays))


@pytest.mark.integration
def test_versions_of_a_rule_naming_no_configured_site_end_failed_listed_logged_once_and_counted(pair):
    put_rules(pair, rule("archive", "STANDARD", bucket=pair.target_bucket))
    api = start_api(pair)
    pair.workers.start("status-processor")
    populator = pair.workers.start("populator")
    for key in ("a", "b"):
        pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=key.encode())
    for key in ("a", "b"):
        assert "names site STANDARD" in _failed_for(pair, "STANDARD", key).reason
    result = pair.workers.run("failed", "--bucket", pair.source_bucket, "--json")
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((f["key"], f["site"], f["status"]) for f in listed) == [("a", "STANDARD", FAILED),
                                                                           ("b", "STANDARD", FAILED)]
    assert all(f["reason"].startswith('unroutable: rule "archive"') for f in listed)
    labels = 'bucket="%s",rule="archive"' % pair.source_bucket
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_unroutable_versions_total", labels) == 2, 30, 0.5,
             "2 unroutable versions in /metrics")
    logged = [r for r in log_records(populator) if r["message"] == UNROUTABLE_LOG]
    assert [(r["bucket"], r["rule"], r["site"]) for r in logged] == [(pair.source_bucket, "archive", "STANDARD")]


@pytest.mark.integration
def test_versions_of_a_rule_naming_no_site_among_two_sites_without_default_end_failed_for_the_rule(pair):
    site = pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0]
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [site, dict(site, site=OTHER_SITE)]})
    put_rules(pair, rule("all", "", bucket=pair.target_bucket))
    pair.workers.start("status-processor")
    pair.workers.start("populator")
    pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"k")
    failed = _failed_for(pair, "(no site: rule all)", "k")
    assert "names no site" in failed.reason and "%s, %s" % (SITE, OTHER_SITE) in failed.reason


@pytest.mark.integration
def test_a_retried_unroutable_version_is_failed_again_then_replicated_once_its_site_is_configured(pair_factory):
    pair = pair_factory(scan_interval_s=2)
    put_rules(pair, rule("archive", "STANDARD", bucket=pair.target_bucket))
    pair.workers.start("status-processor")
    populator = pair.workers.start("populator")
    pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"k")
    _failed_for(pair, "STANDARD", "k")

    assert "re-queued 1 version(s)" in pair.workers.run("retry", "--all").stdout
    assert "names site STANDARD" in _failed_for(pair, "STANDARD", "k", replays=1).reason

    site = pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0]
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [site, dict(site, site="STANDARD")]})
    pair.workers.terminate(populator)
    pair.workers.start("populator")
    pair.workers.start("processor", "--site", "STANDARD", name="processor-standard")
    # the retried entry has waited on the topic for a processor of STANDARD: the new one replicates it
    wait_for(lambda: getattr(_status_of(pair, "STANDARD", "k"), "status", "") == "COMPLETED", 90, 0.5,
             "k to be COMPLETED on STANDARD")
    assert pair.target.head_object(Bucket=pair.target_bucket, Key="k")["Metadata"]["scal-replication-status"] == \
        "REPLICA"
