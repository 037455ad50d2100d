"""Replication rules of a source bucket and which rule (hence which sites) applies to a key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

TagReader = Callable[[], Mapping[str, str]]


@dataclass(frozen=True)
class ReplicationRule:
    """One rule, V1 (`Prefix`) or V2 (`Filter`) normalised: what it matches and where it sends it.

    `tags` are the (key, value) pairs a V2 filter requires (`Filter.Tag` or `Filter.And.Tags`): all must be on
    the version for the rule to apply.
    """

    rule_id: str
    prefix: str
    enabled: bool
    destination: str
    sites: tuple[str, ...]
    priority: int = 0
    storage_class: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def may_match(self, key: str) -> bool:
        """Enabled and the prefix matches: the rule applies unless its tags are missing from the version."""
        return self.enabled and key.startswith(self.prefix)

    def tags_match(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(name) == value for name, value in self.tags)


@dataclass(frozen=True)
class BucketReplication:
    """A bucket's replication configuration: the role(s) and the rules."""

    bucket: str
    role: str
    rules: tuple[ReplicationRule, ...]

    def rule_for(self, key: str, read_tags: TagReader | None = None) -> ReplicationRule | None:
        """The enabled rule applying to a version of `key`: the highest priority, then the longest prefix (V1 has
        no overlap).

        The version's tags are read (`read_tags()`, one request) only when a tag-filtered rule outranks every
        rule without tags that covers the key; without a reader such rules never apply (a delete marker has no
        tags).
        """
        tags = None
        for rule in self._ranked(key):
            if not rule.tags:
                return rule
            if tags is None:
                tags = read_tags() if read_tags is not None else {}
            if rule.tags_match(tags):
                return rule
        return None

    def sites_for(self, key: str) -> set[str]:
        """Every site a version of `key` may go to, whatever its tags: those of the best rule without tags and of
        the tag-filtered rules that outrank it."""
        sites: set[str] = set()
        for rule in self._ranked(key):
            sites.update(rule.sites)
            if not rule.tags:
                break
        return sites

    def _ranked(self, key: str) -> list[ReplicationRule]:
        """The rules that may apply to `key`, best first."""
        return sorted((r for r in self.rules if r.may_match(key)), key=lambda r: (r.priority, len(r.prefix)),
                      reverse=True)

    @property
    def enabled(self) -> bool:
        return any(r.enabled for r in self.rules)


def parse_replication(bucket: str, document: dict, default_site: str | None) -> BucketReplication:
    """The configuration returned by GetBucketReplication, with each rule's storage class read as site names.

    Backbeat reads the destination StorageClass as a comma-separated list of sites; an AWS rule without one
    goes to the default site.
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
            tags=_tags(raw),
        ))
    return BucketReplication(bucket=bucket, role=document.get("Role", ""), rules=tuple(rules))


def _prefix(raw: dict) -> str:
    if "Prefix" in raw:
        return raw["Prefix"] or ""
    rule_filter = raw.get("Filter") or {}
    if "Prefix" in rule_filter:
        return rule_filter["Prefix"] or ""
    return (rule_filter.get("And") or {}).get("Prefix", "") or ""


def _tags(raw: dict) -> tuple[tuple[str, str], ...]:
    rule_filter = raw.get("Filter") or {}
    tags = [rule_filter["Tag"]] if "Tag" in rule_filter else (rule_filter.get("And") or {}).get("Tags", [])
    return tuple((tag["Key"], tag["Value"]) for tag in tags)
