"""Replication rules of a source bucket and which rule (hence which sites) applies to a key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicationRule:
    """One rule, V1 (`Prefix`) or V2 (`Filter`) normalised: what it matches and where it sends it."""

    rule_id: str
    prefix: str
    enabled: bool
    destination: str
    sites: tuple[str, ...]
    priority: int = 0
    storage_class: str = ""

    def matches(self, key: str) -> bool:
        return self.enabled and key.startswith(self.prefix)


@dataclass(frozen=True)
class BucketReplication:
    """A bucket's replication configuration: the role(s) and the rules."""

    bucket: str
    role: str
    rules: tuple[ReplicationRule, ...]

    def rule_for(self, key: str) -> ReplicationRule | None:
        """The enabled rule applying to `key`: the highest priority, then the longest prefix (V1 has no overlap)."""
        candidates = [r for r in self.rules if r.matches(key)]
        if not candidates:
            return None
        return max(candidates, key=lambda r: (r.priority, len(r.prefix)))

    @property
    def enabled(self) -> bool:
        return any(r.enabled for r in self.rules)


def parse_replication(bucket: str, document: dict, default_site: str | None) -> BucketReplication:
    """The configuration returned by GetBucketReplication, with each rule's storage class read as site names.

    Backbeat reads the destination StorageClass as a comma-separated list of sites; an AWS rule without one
    goes to the default site. Rules with tag filters are treated by their prefix only (tags are not read).
    """
    rules = []
    for index, raw in enumerate(document.get("Rules", [])):
        destination = raw.get("Destination", {})
        storage_class = destination.get("StorageClass", "") or ""
        sites = tuple(s.strip() for s in storage_class.split(",") if s.strip())
        if not sites and default_site:
            sites = (default_site,)
        rules.append(ReplicationRule(
            rule_id=raw.get("ID", "rule-%d" % index),
            prefix=_prefix(raw),
            enabled=raw.get("Status") == "Enabled",
            destination=destination.get("Bucket", ""),
            sites=sites,
            priority=int(raw.get("Priority") or 0),
            storage_class=storage_class,
        ))
    return BucketReplication(bucket=bucket, role=document.get("Role", ""), rules=tuple(rules))


def _prefix(raw: dict) -> str:
    if "Prefix" in raw:
        return raw["Prefix"] or ""
    rule_filter = raw.get("Filter") or {}
    if "Prefix" in rule_filter:
        return rule_filter["Prefix"] or ""
    return (rule_filter.get("And") or {}).get("Prefix", "") or ""
