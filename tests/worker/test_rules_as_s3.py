"""Replication rules as S3 defines them: every rule applies (per destination, the highest priority), delete markers
only under rules that replicate them, and a key's versions and markers in the order S3 listed them.

The facts of one component run on fakes; what crosses components runs on the sandbox (real Kafka, moto, worker
processes). moto answers GetBucketReplication with every rule as `Filter: {Prefix: ""}` and DeleteMarkerReplication
Disabled (ARCHITECTURE §6): a V1 rule is read through `StoredReplicationProxy`, which answers as S3 does.
"""

from __future__ import annotations

import threading

import pytest
from botocore.awsrequest import AWSResponse
from crr_worker.config import parse_config
from crr_worker.entries import ReplicationEntry
from crr_worker.ledger import read_ledger
from crr_worker.populator import Populator
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change, VersionInfo
from crr_worker.sources.s3 import S3Source

from tests.integration.test_crr_bucket_replication import StoredReplicationProxy
from tests.worker.harness import SITE, client, start_pipeline, wait_for
from tests.worker.test_batching import FakeProducer

OTHER_SITE = "awsother"


def rule(rule_id: str, storage_class: str, priority: int = 0, prefix: str = "", markers: str = "Disabled",
         tags: dict | None = None, bucket: str = "t", v1: bool = False) -> dict:
    """A V2 rule, or a V1 rule (`Prefix` at the rule's level, no priority, filter or DeleteMarkerReplication)."""
    raw = {"ID": rule_id, "Status": "Enabled", "Destination": {"Bucket": "arn:aws:s3:::" + bucket}}
    if storage_class:
        raw["Destination"]["StorageClass"] = storage_class
    if v1:
        return dict(raw, Prefix=prefix)
    rule_filter = {"Prefix": prefix}
    if tags:
        rule_filter = {"And": {"Prefix": prefix, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}}
    return dict(raw, Priority=priority, Filter=rule_filter, DeleteMarkerReplication={"Status": markers})


def replication(*rules: dict, default_site: str | None = "aws1"):
    return parse_replication("src", {"Role": "r", "Rules": list(rules)}, default_site)


def routed(found) -> list[tuple[str, tuple[str, ...]]]:
    return [(route.rule.rule_id, route.sites) for route in found]


# --- every rule applies; of the rules naming one site, the highest priority ------------------------------------------

def test_two_rules_to_two_sites_send_a_version_to_both():
    rules = replication(rule("first", "aws1", priority=2), rule("second", "aws2", priority=1))
    assert routed(rules.routes_for("k")) == [("first", ("aws1",)), ("second", ("aws2",))]


def test_of_the_rules_naming_a_site_the_highest_priority_one_sends_the_version_there():
    rules = replication(rule("low", "aws1,aws2", priority=1, bucket="low"), rule("high", "aws1", priority=5),
                        rule("docs", "aws2", priority=3, prefix="docs/"))
    assert routed(rules.routes_for("docs/a")) == [("high", ("aws1",)), ("docs", ("aws2",))]
    assert routed(rules.routes_for("logs/a")) == [("high", ("aws1",)), ("low", ("aws2",))]


def test_a_tag_rule_is_passed_over_for_the_sites_of_a_version_without_its_tags_and_read_once():
    reads = []

    def read_tags():
        reads.append(1)
        return {"tier": "gold"}

    rules = replication(rule("gold", "aws2", priority=3, tags={"tier": "gold"}),
                        rule("silver", "aws1", priority=2, tags={"tier": "silver"}), rule("all", "aws1", priority=1))
    assert routed(rules.routes_for("k", read_tags)) == [("gold", ("aws2",)), ("all", ("aws1",))]
    assert reads == [1]


def test_a_tag_rule_whose_sites_a_better_rule_took_costs_no_tag_reading():
    def read_tags():
        raise AssertionError("no rule left needs the tags")

    rules = replication(rule("all", "aws1", priority=2), rule("tagged", "aws1", priority=1, tags={"a": "b"}))
    assert routed(rules.routes_for("k", read_tags)) == [("all", ("aws1",))]


def test_the_sites_a_key_may_go_to_are_those_of_every_rule_covering_it():
    rules = replication(rule("tagged", "gold", priority=3, tags={"a": "b"}), rule("docs", "docs", priority=2,
                        prefix="docs/"), rule("all", "all,docs", priority=1))
    assert rules.sites_for("docs/x") == {"gold", "docs", "all"}
    assert rules.sites_for("logs/x") == {"gold", "all", "docs"}


class RulesSource:
    """A source with `rules` for bucket src and the versions of each key (oldest first)."""

    def __init__(self, rules: list[dict], versions: dict[str, list[VersionInfo]], default_site: str | None = None,
                 tags: dict[str, dict] | None = None):
        self.rules, self.versions, self.default_site, self.tags = rules, versions, default_site, tags or {}
        self.tag_reads: list[str] = []

    def replication(self, bucket):
        return parse_replication(bucket, {"Role": "r", "Rules": self.rules}, self.default_site)

    def list_keys_versions(self, bucket, keys):
        return {key: self.versions[key] for key in keys}

    def version_tags(self, bucket, key, version_id):
        self.tag_reads.append(version_id)
        return self.tags.get(version_id, {})


def populator_of(source, sites: tuple[str, ...] = ("aws1", "aws2")) -> Populator:
    """A populator serving `sites` (none marked default), publishing to a FakeProducer."""
    config = parse_config({"kafka": {"hosts": "127.0.0.1:9092"}, "extensions": {"replication": {
        "topic": "repl", "replicationStatusTopic": "status", "source": {"buckets": ["src"]},
        "destination": {"bootstrapList": [{"site": site, "type": "aws_s3"} for site in sites]}}}})
    populator = Populator(config, source, threading.Event())
    populator.producer = FakeProducer()
    return populator


def sent(populator, topic: str = "repl") -> list[ReplicationEntry]:
    return [ReplicationEntry.from_kafka(e[3]) for e in populator.producer.events if e[:2] == ("send", topic)]


def versions(key: str, *ids: str, marker: str | None = None) -> list[VersionInfo]:
    return [VersionInfo("src", key, v, is_delete_marker=v == marker) for v in ids]


def test_a_version_under_two_rules_is_queued_for_each_rules_site_with_that_rules_destination():
    source = RulesSource([rule("first", "aws1", priority=2, bucket="t1"), rule("second", "aws2", priority=1,
                                                                              bucket="t2")], {"k": versions("k", "v1")})
    populator = populator_of(source)
    assert populator.handle([Change("src", "k")]) == 2
    assert [(e.version_id, e.sites, e.destination) for e in sent(populator)] == [
        ("v1", ("aws1",), "arn:aws:s3:::t1"), ("v1", ("aws2",), "arn:aws:s3:::t2")]
    assert populator.handle([Change("src", "k")]) == 0


def test_a_tag_decision_of_two_rules_is_remembered_for_both():
    source = RulesSource([rule("tagged", "aws2", priority=2, tags={"r": "y"}), rule("all", "aws1", priority=1)],
                         {"k": versions("k", "v1")}, tags={"v1": {"r": "y"}})
    populator = populator_of(source)
    assert populator.handle([Change("src", "k")]) == 2
    assert populator.handle([Change("src", "k")]) == 0
    assert source.tag_reads == ["v1"]


# --- delete markers only under rules that replicate them -------------------------------------------------------------

def test_a_v2_rule_replicates_delete_markers_only_when_its_delete_marker_replication_is_enabled():
    assert routed(replication(rule("on", "aws1", markers="Enabled")).routes_for("k", delete_marker=True)) == [
        ("on", ("aws1",))]
    assert replication(rule("off", "aws1", markers="Disabled")).routes_for("k", delete_marker=True) == ()
    assert routed(replication(rule("off", "aws1", markers="Disabled")).routes_for("k")) == [("off", ("aws1",))]


def test_a_v1_rule_replicates_delete_markers_as_s3_and_backbeat_do():
    assert routed(replication(rule("v1", "aws1", v1=True)).routes_for("k", delete_marker=True)) == [
        ("v1", ("aws1",))]


def test_a_marker_is_not_sent_to_a_site_under_a_lower_rule_when_the_rule_deciding_for_that_site_disables_markers():
    rules = replication(rule("high", "aws1", priority=2, markers="Disabled"),
                        rule("low", "aws1,aws2", priority=1, markers="Enabled"))
    assert routed(rules.routes_for("k", delete_marker=True)) == [("low", ("aws2",))]


def test_a_delete_marker_under_a_rule_not_replicating_markers_is_not_queued_and_its_versions_are():
    source = RulesSource([rule("all", "aws1", markers="Disabled")], {"k": versions("k", "v1", "dm", "v2",
                                                                                       marker="dm")})
    populator = populator_of(source, sites=("aws1",))
    assert populator.handle([Change("src", "k")]) == 2
    assert [e.version_id for e in sent(populator)] == ["v1", "v2"]
    assert [ReplicationEntry.from_kafka(e[3]).version_id for e in populator.producer.events
            if e[:2] == ("send", "status")] == ["v1", "v2"]


# --- a key's versions and markers in the order S3 listed them ------------------------------------------------------

SAME_SECOND = "2026-01-01T00:00:00.000Z"
OWNER = "<Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>"


def _version(key: str, version_id: str, latest: bool) -> str:
    return ('<Version><Key>%s</Key><VersionId>%s</VersionId><IsLatest>%s</IsLatest><LastModified>%s</LastModified>'
            '<ETag>&quot;%s&quot;</ETag><Size>2</Size>%s<StorageClass>STANDARD</StorageClass></Version>'
            % (key, version_id, str(latest).lower(), SAME_SECOND, "0" * 32, OWNER))


def _marker(key: str, version_id: str, latest: bool) -> str:
    return ('<DeleteMarker>%s<Key>%s</Key><VersionId>%s</VersionId><IsLatest>%s</IsLatest>'
            '<LastModified>%s</LastModified></DeleteMarker>' % (OWNER, key, version_id, str(latest).lower(),
                                                                SAME_SECOND))


# ListObjectVersions as S3 answers it (the shape of its API reference example): one list, by key, each key's
# versions and delete markers together, newest first. True order of k: v1, dm, v2; of l: l1, ldm, all in one second.
SAME_SECOND_PAGE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    '<Name>src</Name><Prefix></Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>'
    '<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>'
    + _version("k", "v2", True) + _marker("k", "dm", False) + _version("k", "v1", False)
    + _marker("l", "ldm", True) + _version("l", "l1", False)
    + "</ListVersionsResult>"
).encode()


class _Body:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def _source_answering(page: bytes, monkeypatch) -> S3Source:
    """The s3 source, its client answering every ListObjectVersions with `page` (parsed by botocore as always)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = parse_config({"kafka": {"hosts": "127.0.0.1:9"}, "extensions": {"replication": {
        "source": {"endpoint": "http://127.0.0.1:9", "buckets": ["src"]},
        "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    source = S3Source(config.source, "aws1")
    source.s3.meta.events.register("before-send.s3.ListObjectVersions",
                                   lambda request, **_: AWSResponse(request.url, 200, {}, _Body(page)))
    return source


@pytest.mark.parametrize("listing", ["one key", "a batch's keys together"])
def test_a_version_and_a_delete_marker_of_the_same_second_keep_the_order_s3_listed_them_in(listing, monkeypatch):
    source = _source_answering(SAME_SECOND_PAGE, monkeypatch)
    if listing == "one key":
        found = {key: list(source.list_versions("src", key)) for key in ("k", "l")}
    else:
        found = source.list_keys_versions("src", ["k", "l"])
    assert {key: [v.version_id for v in listed] for key, listed in found.items()} == {
        "k": ["v1", "dm", "v2"], "l": ["l1", "ldm"]}
    assert [v.is_delete_marker for v in found["k"]] == [False, True, False]


# --- across the pipeline ---------------------------------------------------------------------------------------------

def put_rules(pair, *rules: dict, through=None) -> None:
    """Replace the pair's rules (through another client of the source, e.g. one of a proxy)."""
    role = pair.source.get_bucket_replication(Bucket=pair.source_bucket)["ReplicationConfiguration"]["Role"]
    (through or pair.source).put_bucket_replication(Bucket=pair.source_bucket,
                                                    ReplicationConfiguration={"Role": role, "Rules": list(rules)})


def ledger_statuses(pair) -> dict:
    """(site, key, version id) -> status, every site."""
    return {(s.site, s.entry.key, s.entry.version_id): s for s in read_ledger(pair.load()).values()}


@pytest.mark.integration
def test_two_rules_to_two_sites_replicate_a_version_to_both_sites(pair):
    other_bucket = pair.target_bucket + "-2"
    pair.target.create_bucket(Bucket=other_bucket)
    pair.target.put_bucket_versioning(Bucket=other_bucket, VersioningConfiguration={"Status": "Enabled"})
    site = pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0]
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [site, dict(site, site=OTHER_SITE)]})
    put_rules(pair, rule("first", SITE, priority=2, bucket=pair.target_bucket),
              rule("second", OTHER_SITE, priority=1, bucket=other_bucket))
    start_pipeline(pair)
    pair.workers.start("processor", "--site", OTHER_SITE, name="processor-other")
    version_id = pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"both")["VersionId"]

    def completed():
        ledger = ledger_statuses(pair)
        return all(getattr(ledger.get((s, "k", version_id)), "status", "") == "COMPLETED" for s in (SITE, OTHER_SITE))

    wait_for(completed, 90, 0.5, "k to be COMPLETED on both sites")
    for bucket in (pair.target_bucket, other_bucket):
        head = pair.target.head_object(Bucket=bucket, Key="k")
        assert head["Metadata"]["scal-version-id"] == version_id, bucket


@pytest.mark.integration
def test_a_delete_marker_under_a_v2_rule_not_replicating_markers_stays_on_the_source(pair):
    put_rules(pair, rule("all", SITE, markers="Disabled", bucket=pair.target_bucket))
    start_pipeline(pair)
    first = pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"1")["VersionId"]
    marker = pair.source.delete_object(Bucket=pair.source_bucket, Key="k")["VersionId"]
    last = pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"2")["VersionId"]
    # v2's notification lists the key: its marker is decided with it, and a marker queued would be replicated first
    wait_for(lambda: getattr(pair.statuses().get(("k", last)), "status", "") == "COMPLETED", 90, 0.5,
             "the version after the marker to be COMPLETED")
    statuses = pair.statuses()
    assert statuses[("k", first)].status == "COMPLETED" and ("k", marker) not in statuses
    assert pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="k").get("DeleteMarkers", []) == []


@pytest.mark.integration
def test_a_delete_marker_under_a_v1_rule_is_replicated(pair_factory):
    pair = pair_factory(notifications=False)
    proxy = StoredReplicationProxy(pair.sandbox.source.url)
    try:
        pair.write_config(**{"extensions.replication.source.endpoint": proxy.url})
        put_rules(pair, rule("all", SITE, bucket=pair.target_bucket, v1=True), through=client("s3", proxy.url))
        pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"1")
        pair.source.delete_object(Bucket=pair.source_bucket, Key="k")
        start_pipeline(pair)
        pair.wait_all_done(90)
    finally:
        pair.workers.stop_all()
        proxy.close()
    markers = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="k").get("DeleteMarkers", [])
    assert [m["IsLatest"] for m in markers] == [True]
