"""The end-state checks of the fault campaign (fault_campaign.py): both sides compared key by key, and the ledger.

A replica on the target is known by its `scal-version-id`. After a late older version the processor puts the newer
replica back on top by a server-side copy (worker/crr_worker/targets/aws_s3_order.py): such identical copies are
counted as `restored_copies`, not as duplicates, and of several copies of one version the newest stands for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class TargetVersion:
    """One version on the target, newest first in its key's list."""

    key: str
    version_id: str
    is_marker: bool
    is_latest: bool
    source_version_id: str = ""  # scal-version-id; "" for a marker or a version that is no replica
    etag: str = ""
    size: int = 0


@dataclass
class Findings:
    """Each check's figure, with a few examples of what it found."""

    counts: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def add(self, check: str, example=None) -> None:
        self.counts[check] = self.counts.get(check, 0) + 1
        if example is not None and len(self.examples.setdefault(check, [])) < 5:
            self.examples[check].append(example)


CHECKS = ("multipart_bodies_checked", "lost",
          "lost_markers", "duplicated", "restored_copies", "extra_markers", "out_of_order",
          "latest_differs", "body_differs", "not_replicas", "ledger_failed", "ledger_pending", "ledger_missing",
          "replays_waiting")


def list_versions(s3, bucket: str) -> dict[str, list[dict]]:
    """key -> its versions and delete markers, newest first (dicts of ListObjectVersions plus `Marker`)."""
    by_key: dict[str, list[dict]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            by_key.setdefault(version["Key"], []).append(dict(version, Marker=False))
        for marker in page.get("DeleteMarkers", []):
            by_key.setdefault(marker["Key"], []).append(dict(marker, Marker=True))
    for versions in by_key.values():
        versions.sort(key=lambda v: v["LastModified"], reverse=True)  # stable: the listing's order within a second
    return by_key


def target_versions(s3, bucket: str) -> dict[str, list[TargetVersion]]:
    """key -> the target's versions newest first, each replica's scal-version-id read by a HEAD (8 at a time)."""
    listed = list_versions(s3, bucket)

    def describe(version: dict) -> TargetVersion:
        found = TargetVersion(version["Key"], version["VersionId"], version["Marker"], version["IsLatest"])
        if not found.is_marker:
            head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            found.source_version_id = head.get("Metadata", {}).get("scal-version-id", "")
            found.etag, found.size = version["ETag"], version["Size"]
        return found

    with ThreadPoolExecutor(8) as pool:
        return {key: list(pool.map(describe, versions)) for key, versions in listed.items()}


def compare(source: dict[str, list[dict]], target: dict[str, list[TargetVersion]]) -> Findings:
    """Every check of both sides; `source` as list_versions returns it."""
    findings = Findings({check: 0 for check in CHECKS})
    for key, versions in source.items():
        _compare_key(key, versions, target.get(key, []), findings)
    for key in set(target) - set(source):
        findings.add("not_replicas", {"key": key, "detail": "a key the source does not hold"})
    return findings


def _compare_key(key: str, source: list[dict], target: list[TargetVersion], findings: Findings) -> None:
    rank = {v["VersionId"]: index for index, v in enumerate(reversed(source))}  # 0 = oldest
    by_id = {v["VersionId"]: v for v in source}
    replicas = [t for t in target if not t.is_marker]
    copies: dict[str, list[int]] = {}
    for position, replica in enumerate(replicas):
        if replica.source_version_id not in rank:
            findings.add("not_replicas", {"key": key, "target_version_id": replica.version_id})
            continue
        copies.setdefault(replica.source_version_id, []).append(position)
        wanted = by_id[replica.source_version_id]
        if replica.size != wanted["Size"] or ("-" not in replica.etag and replica.etag != wanted["ETag"]):
            findings.add("body_differs", {"key": key, "version_id": replica.source_version_id})
    for version in source:
        if not version["Marker"] and version["VersionId"] not in copies:
            findings.add("lost", {"key": key, "version_id": version["VersionId"]})
    _count_copies(key, replicas, copies, rank, findings)
    _check_order(key, replicas, copies, rank, findings)
    _count_markers(key, source, target, findings)
    _check_latest(key, source, target, findings)


def _count_copies(key, replicas, copies, rank, findings) -> None:
    """A second copy of a replica is a restored one when identical and a late (older) version lies between."""
    for source_id, positions in copies.items():
        if len(positions) == 1:
            continue
        identical = len({replicas[p].etag for p in positions}) == 1
        between = replicas[positions[0] + 1:positions[-1]]
        late = any(rank.get(r.source_version_id, -1) < rank[source_id] for r in between)
        check = "restored_copies" if identical and late else "duplicated"
        for _ in positions[1:]:
            findings.add(check, {"key": key, "version_id": source_id, "copies": len(positions)})


def _check_order(key, replicas, copies, rank, findings) -> None:
    """Newest first, each version at its newest copy, the ranks must fall."""
    newest_copy = [replicas[positions[0]].source_version_id for positions in copies.values()]
    in_target_order = sorted(newest_copy, key=lambda vid: copies[vid][0])
    ranks = [rank[vid] for vid in in_target_order]
    if ranks != sorted(ranks, reverse=True):
        findings.add("out_of_order", {"key": key, "target_ranks_newest_first": ranks})


def _count_markers(key, source, target, findings) -> None:
    on_source = sum(1 for v in source if v["Marker"])
    on_target = sum(1 for t in target if t.is_marker)
    if on_target < on_source:
        findings.add("lost_markers", {"key": key, "source": on_source, "target": on_target})
    elif on_target > on_source:
        findings.add("extra_markers", {"key": key, "source": on_source, "target": on_target})


def _check_latest(key, source, target, findings) -> None:
    """A key deleted on the source has a marker as latest, or no version at all, on the target."""
    latest = next((v for v in source if v["IsLatest"]), source[0])
    on_target = next((t for t in target if t.is_latest), None)
    if latest["Marker"]:
        agrees = on_target is None or on_target.is_marker
    else:
        agrees = on_target is not None and not on_target.is_marker and \
            on_target.source_version_id == latest["VersionId"]
    if not agrees:
        findings.add("latest_differs", {"key": key, "source_latest": latest["VersionId"],
                                        "source_latest_is_marker": latest["Marker"],
                                        "target_latest": on_target and (on_target.source_version_id or "marker")})


def check_multipart_bodies(pair, target: dict[str, list[TargetVersion]], findings: Findings) -> None:
    """A replica written by a multipart upload has an ETag of its own ("<md5>-<parts>"): its body's MD5 is
    compared with the source version's instead (the campaign keeps such objects few)."""
    from tests.worker.harness import body_md5

    for key, versions in target.items():
        for replica in versions:
            if replica.is_marker or "-" not in replica.etag or not replica.source_version_id:
                continue
            findings.add("multipart_bodies_checked")
            if body_md5(pair.source, pair.source_bucket, key, replica.source_version_id) != \
                    body_md5(pair.target, pair.target_bucket, key, replica.version_id):
                findings.add("body_differs", {"key": key, "version_id": replica.source_version_id,
                                              "detail": "multipart replica's body MD5 differs"})


def check_ledger(statuses: dict, source: dict[str, list[dict]], findings: Findings) -> None:
    """Every source version's status for the site: COMPLETED, or counted as FAILED / PENDING / missing."""
    for key, versions in source.items():
        for version in versions:
            status = statuses.get((key, version["VersionId"]))
            if status is None:
                findings.add("ledger_missing", {"key": key, "version_id": version["VersionId"]})
            elif status.status == "PENDING":
                findings.add("ledger_pending", {"key": key, "version_id": version["VersionId"]})
            elif status.status == "FAILED":
                findings.add("replays_waiting" if status.replay_at else "ledger_failed",
                             {"key": key, "version_id": version["VersionId"], "reason": status.reason[:300]})
