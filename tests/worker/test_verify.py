"""`crr-worker verify` on a pair the real pipeline replicated (Kafka, moto source and target, crr-worker processes):
no finding on the clean pair, then each difference planted on the target by hand with boto3 found, and
`--repair` fixing what the worker can fix."""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pytest
from crr_worker.sources.base import VersionInfo
from crr_worker.verify import Replica, Report, _Progress, compare_key

from tests.worker.harness import SITE, start_pipeline, wait_for

pytestmark = pytest.mark.integration


def verify(pair, *options: str):
    """(exit code, findings by key -> set of kinds, summary dict, result) of `crr-worker verify --json`."""
    result = pair.workers.run("verify", "--bucket", pair.source_bucket, "--json", *options)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    findings = defaultdict(set)
    for line in lines:
        if "finding" in line:
            findings[line["key"]].add(line["finding"])
    summaries = [line for line in lines if line.get("summary")]
    assert len(summaries) == 1, result.stdout + result.stderr
    return result.returncode, dict(findings), summaries[0], result


def replica_of(pair, key: str, source_version_id: str) -> str:
    """The target version id of the replica of `source_version_id`."""
    for version in pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix=key).get("Versions", []):
        head = pair.target.head_object(Bucket=pair.target_bucket, Key=key, VersionId=version["VersionId"])
        if version["Key"] == key and head["Metadata"].get("scal-version-id") == source_version_id:
            return version["VersionId"]
    raise AssertionError("no replica of %s %s" % (key, source_version_id))


def put_replica(pair, key: str, source_version_id: str, body: bytes) -> None:
    """A target version claiming to be the replica of `source_version_id`."""
    pair.target.put_object(Bucket=pair.target_bucket, Key=key, Body=body,
                           Metadata={"scal-version-id": source_version_id, "scal-replication-status": "REPLICA"})


def test_verify_finds_each_planted_difference_and_repair_fixes_the_missing_ones(pair_factory):
    pair = pair_factory(scan_interval_s=5)  # moto notifies no delete marker: the scan finds it
    destination = {"Bucket": "arn:aws:s3:::%s" % pair.target_bucket, "StorageClass": SITE}
    pair.source.put_bucket_replication(Bucket=pair.source_bucket, ReplicationConfiguration={
        "Role": "arn:aws:iam::123456789012:role/crr", "Rules": [
            {"ID": "rep", "Priority": 2, "Status": "Enabled", "Filter": {"Prefix": "rep/"},
             "DeleteMarkerReplication": {"Status": "Enabled"}, "Destination": destination},
            {"ID": "tagged", "Priority": 1, "Status": "Enabled",
             "Filter": {"And": {"Prefix": "tag/", "Tags": [{"Key": "crr", "Value": "yes"}]}},
             "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": destination},
            {"ID": "no-markers", "Priority": 3, "Status": "Enabled", "Filter": {"Prefix": "nomarks/"},
             "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": destination}]})
    ids = defaultdict(list)
    for key in ("rep/clean", "rep/missing", "rep/extra", "rep/body", "rep/order", "rep/deleted", "rep/dead",
                "skip/unsent"):
        for n in range(1 if key in ("rep/extra", "rep/body", "rep/deleted", "rep/dead", "skip/unsent") else 2):
            reply = pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=b"%s v%d" % (key.encode(), n))
            ids[key].append(reply["VersionId"])
    # sent: tag/yes and nomarks/k, not their delete markers (a tag rule sends none, nor one whose
    # DeleteMarkerReplication is Disabled); not sent: tag/no (no tag), skip/unsent (no rule)
    ids["tag/yes"].append(pair.source.put_object(Bucket=pair.source_bucket, Key="tag/yes", Body=b"yes",
                                                 Tagging="crr=yes")["VersionId"])
    ids["nomarks/k"].append(pair.source.put_object(Bucket=pair.source_bucket, Key="nomarks/k", Body=b"k")["VersionId"])
    pair.source.put_object(Bucket=pair.source_bucket, Key="tag/no", Body=b"no")
    for key in ("tag/yes", "nomarks/k"):
        pair.source.delete_object(Bucket=pair.source_bucket, Key=key)
    markers = {key: pair.source.delete_object(Bucket=pair.source_bucket, Key=key)["VersionId"]
               for key in ("rep/deleted", "rep/dead")}
    start_pipeline(pair)
    wanted = {(key, v) for key, versions in ids.items() if key != "skip/unsent" for v in versions}
    wanted |= set(markers.items())

    def replicated():
        statuses = pair.statuses()
        return all(k in statuses and statuses[k].status == "COMPLETED" for k in wanted)

    wait_for(replicated, 120, 2.0, "the versions the rules send to be replicated")

    code, findings, summary, result = verify(pair)
    assert (code, findings) == (0, {}), result.stdout + result.stderr
    assert summary["checked"] == len(wanted) and summary["result"] == "OK"  # what is not sent is not missing
    plain = pair.workers.run("verify", "--bucket", pair.source_bucket)
    assert plain.returncode == 0 and plain.stdout.strip() == (
        "verify %s -> site %s (bucket %s): %d versions checked, 0 missing, 0 extra, 0 mismatched, 0 out of order, "
        "0 latest differing: OK" % (pair.source_bucket, SITE, pair.target_bucket, len(wanted)))
    assert "versions checked" not in plain.stderr  # no progress line: stderr is no terminal here

    target, bucket = pair.target, pair.target_bucket
    target.delete_object(Bucket=bucket, Key="rep/missing",
                         VersionId=replica_of(pair, "rep/missing", ids["rep/missing"][1]))
    target.put_object(Bucket=bucket, Key="rep/extra", Body=b"not from the source")
    target.delete_object(Bucket=bucket, Key="rep/body", VersionId=replica_of(pair, "rep/body", ids["rep/body"][0]))
    put_replica(pair, "rep/body", ids["rep/body"][0], b"another body")
    target.delete_object(Bucket=bucket, Key="rep/order", VersionId=replica_of(pair, "rep/order", ids["rep/order"][0]))
    put_replica(pair, "rep/order", ids["rep/order"][0], b"rep/order v0")
    dm = target.list_object_versions(Bucket=bucket, Prefix="rep/deleted")["DeleteMarkers"][0]["VersionId"]
    target.delete_object(Bucket=bucket, Key="rep/deleted", VersionId=dm)  # live on the target, deleted on the source
    # rep/dead left with its delete marker only on the target, which moto then lists after every key with versions
    target.delete_object(Bucket=bucket, Key="rep/dead", VersionId=replica_of(pair, "rep/dead", ids["rep/dead"][0]))

    code, findings, summary, result = verify(pair)
    assert code == 1, result.stdout + result.stderr
    assert findings == {"rep/dead": {"missing"}, "rep/missing": {"missing", "latest"},
                        "rep/extra": {"extra", "latest"}, "rep/body": {"mismatch"}, "rep/order": {"order", "latest"},
                        "rep/deleted": {"missing", "latest"}}, result.stdout
    assert (summary["missing"], summary["extra"], summary["mismatch"], summary["order"], summary["latest"]) == \
        (3, 1, 1, 1, 4)
    assert summary["result"] == "DIFFERENT"
    code, findings, summary, _ = verify(pair, "--prefix", "rep/o")
    assert (code, findings, summary["checked"]) == (1, {"rep/order": {"order", "latest"}}, 2)

    code, _, summary, result = verify(pair, "--repair")
    assert code == 1 and summary["requeued"] == 4, result.stdout + result.stderr  # 3 missing + 1 mismatched

    def repaired():
        code, findings, _, _ = verify(pair)
        return findings if "rep/missing" not in findings and "rep/deleted" not in findings else None

    findings = wait_for(repaired, 90, 2.0, "the missing latest replica and delete marker to be written again")
    # S3 cannot put a version below others: rep/dead's version comes back over its marker, and the processor puts
    # a marker back on top (its key is deleted on the source), which verify takes for the source's marker; a wrong
    # replica is left as it is (the processor skips a version the target holds a replica of); an extra version and
    # the order are not the worker's to change
    assert findings == {"rep/extra": {"extra", "latest"}, "rep/body": {"mismatch"}, "rep/order": {"order", "latest"}}
    dead = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="rep/dead")
    assert len(dead["Versions"]) == 1 and len(dead["DeleteMarkers"]) == 2


def test_verify_refuses_a_site_that_does_not_serve_the_bucket(pair):
    result = pair.workers.run("verify", "--bucket", pair.source_bucket, "--site", "elsewhere")
    assert result.returncode == 2
    assert "no configured site elsewhere serves bucket %s" % pair.source_bucket in result.stderr
    assert "--site must be one of" in result.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_is_redrawn_on_a_terminal_only():
    now = [0.0]
    report = Report("src", SITE, "tgt", checked=7)
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = _Progress(stream, clock=lambda: now[0])
        now[0] += 1.0
        progress.update(report)
        progress.done(report)
    assert terminal.getvalue() == "\rverify src -> %s: 7 versions checked, 0 differences" % SITE * 2 + "\n"
    assert pipe.getvalue() == ""


def test_a_scality_replica_is_matched_by_its_version_id_markers_included():
    """No scality site runs in the tests: the comparison its listing feeds, on listed versions."""
    v1, dm = VersionInfo("b", "k", "v1", size=2, etag='"e1"'), VersionInfo("b", "k", "dm", is_delete_marker=True)
    assert compare_key("k", [v1, dm], [Replica(v1), Replica(dm)], same_ids=True) == []
    other = VersionInfo("b", "k", "v1", size=3, etag='"e2"')
    assert [f.kind for f in compare_key("k", [v1, dm], [Replica(other), Replica(dm)], same_ids=True)] == ["mismatch"]
    assert [f.kind for f in compare_key("k", [v1, dm], [Replica(dm), Replica(v1)], same_ids=True)] == \
        ["order", "latest"]
    assert [(f.kind, f.version_id) for f in compare_key("k", [v1, dm], [Replica(v1)], same_ids=True)] == \
        [("missing", "dm"), ("latest", "dm")]


def test_an_aws_s3_key_with_its_latest_put_back_on_top_after_a_late_version_agrees():
    """What the processor leaves after a late older version (crr_worker.targets.aws_s3_order): a copy of the newer
    replica on top, or a marker put back over it; a copy with another body is still a difference."""
    v1, v2 = VersionInfo("b", "k", "v1", size=2, etag='"e1"'), VersionInfo("b", "k", "v2", size=2, etag='"e2"')
    dm = VersionInfo("b", "k", "dm", is_delete_marker=True)

    def replica(source: VersionInfo, target_id: str, etag: str | None = None) -> Replica:
        listed = VersionInfo("t", "k", target_id, source.is_delete_marker, source.size, etag or source.etag)
        return Replica(listed, None if source.is_delete_marker else source.version_id, "REPLICA")

    restored = [replica(v2, "t1"), replica(v1, "t2"), replica(v2, "t3")]
    assert compare_key("k", [v1, v2], restored, same_ids=False) == []
    deleted = [replica(v1, "t1"), replica(dm, "t2"), replica(v2, "t3"), replica(dm, "t4")]
    assert compare_key("k", [v1, v2, dm], deleted, same_ids=False) == []
    wrong_copy = [replica(v1, "t1"), replica(v2, "t2", '"bad"'), replica(v2, "t3")]
    assert [f.kind for f in compare_key("k", [v1, v2], wrong_copy, same_ids=False)] == ["extra"]
    late_only = [replica(v2, "t1"), replica(v1, "t2")]
    assert [f.kind for f in compare_key("k", [v1, v2], late_only, same_ids=False)] == ["order", "latest"]


def test_a_multipart_etag_on_either_side_is_not_compared_but_sizes_still_are():
    source = VersionInfo("b", "k", "v1", size=100, etag='"0123abcd"')
    listed = VersionInfo("t", "k", "t1", size=100, etag='"feed-7"')
    assert compare_key("k", [source], [Replica(listed, "v1", "REPLICA")], same_ids=False) == []
    shorter = VersionInfo("t", "k", "t1", size=99, etag='"feed-7"')
    assert [f.kind for f in compare_key("k", [source], [Replica(shorter, "v1", "REPLICA")], same_ids=False)] == \
        ["mismatch"]
    other = VersionInfo("t", "k", "t1", size=100, etag='"0123abce"')
    assert [f.kind for f in compare_key("k", [source], [Replica(other, "v1", "REPLICA")], same_ids=False)] == \
        ["mismatch"]
