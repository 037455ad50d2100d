"""Replication rules of a source bucket and where they send a version: which rules apply, for which sites."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

TagReader = Callable[[], Mapping[str, str]]
NO_SITE = "(no site: rule %s)"  # where a rule naming no site sends versions: a site no processor serves
UNROUTABLE = "unroutable: rule "


@dataclass(frozen=True)
class ReplicationRule:
    """One rule, V1 (`Prefix`) or V2 (`Filter`) normalised: what it matches and where it sends it.

    `tags` are the (key, value) pairs a V2 filter requires (`Filter.Tag` or `Filter.And.Tags`): all must be on
    the version for the rule to apply. `delete_markers`: whether the rule replicates delete markers (a V1 rule
    does; a V2 rule when its DeleteMarkerReplication is Enabled). `sites` is never empty: a rule that names no
    site (no StorageClass, no default site) sends versions to its NO_SITE placeholder.
    """

    rule_id: str
    prefix: str
    enabled: bool
    destination: str
    sites: tuple[str, ...]
    priority: int = 0
    storage_class: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    delete_markers: bool = True

    def may_match(self, key: str) -> bool:
        """Enabled and the prefix matches: the rule applies unless its tags are missing from the version."""
        return self.enabled and key.startswith(self.prefix)

    def tags_match(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(name) == value for name, value in self.tags)


@dataclass(frozen=True)
class Route:
    """One rule applying to a version, and the sites it sends the version to (those no better rule took)."""

    rule: ReplicationRule
    sites: tuple[str, ...]


@dataclass(frozen=True)
class BucketReplication:
    """A bucket's replication configuration: the role(s) and the rules."""

    bucket: str
    role: str
    rules: tuple[ReplicationRule, ...]

    def routes_for(self, key: str, read_tags: TagReader | None = None, delete_marker: bool = False
                   ) -> tuple[Route, ...]:
        """Where a version of `key` goes: S3 applies every rule, and of rules with the same destination the one of
        highest priority (then, here, the longest prefix). A destination is a site: each site takes the version
        under the best rule naming it.

        The version's tags are read (`read_tags()`, one request) only when a tag-filtered rule may still send it to
        a site no better rule took; without a reader (a delete marker has no tags) such rules never apply. A delete
        marker goes nowhere under the rule deciding for a site when that rule does not replicate markers.
        """
        taken: set[str] = set()
        routes = []
        tags = None
        for rule in self._ranked(key):
            sites = tuple(s for s in rule.sites if s not in taken)
            if not sites:
                continue  # every site of this rule has its rule already: its tags need no reading
            if rule.tags:
                if delete_marker:
                    continue
                if tags is None:
                    tags = read_tags() if read_tags is not None else {}
                if not rule.tags_match(tags):
                    continue
            taken.update(sites)
            if not delete_marker or rule.delete_markers:
                routes.append(Route(rule, sites))
        return tuple(routes)

    def rule_for(self, key: str, read_tags: TagReader | None = None) -> ReplicationRule | None:
        """The best rule applying to a version of `key` (the first of routes_for); None when none does."""
        routes = self.routes_for(key, read_tags)
        return routes[0].rule if routes else None

    def routes_ignoring_tags(self, key: str) -> tuple[Route, ...]:
        """Where versions of `key` may have gone whatever their tags: each site under the best rule covering the
        key and naming it. For a version deleted from the source, whose tags can no longer be read."""
        taken: set[str] = set()
        routes = []
        for rule in self._ranked(key):
            sites = tuple(s for s in rule.sites if s not in taken)
            if sites:
                taken.update(sites)
                routes.append(Route(rule, sites))
        return tuple(routes)

    def sites_for(self, key: str) -> set[str]:
        """Every site a version of `key` may go to, whatever its tags: those of every rule covering the key."""
        return {site for rule in self._ranked(key) for site in rule.sites}

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
    goes to the default site, or with none to its NO_SITE placeholder.
    """
    rules = []
    for index, raw in enumerate(document.get("Rules", [])):
        rule_id = raw.get("ID", "rule-%d" % index)
        destination = raw.get("Destination", {})
        storage_class = destination.get("StorageClass", "") or ""
        sites = tuple(s.strip() for s in storage_class.split(",") if s.strip())
        if not sites:
            sites = (default_site,) if default_site else (NO_SITE % rule_id,)
        rules.append(ReplicationRule(
            rule_id=rule_id,
            prefix=_prefix(raw),
            enabled=raw.get("Status") == "Enabled",
            destination=destination.get("Bucket", ""),
            sites=sites,
            priority=int(raw.get("Priority") or 0),
            storage_class=storage_class,
            tags=_tags(raw),
            delete_markers=_replicates_delete_markers(raw),
        ))
    return BucketReplication(bucket=bucket, role=document.get("Role", ""), rules=tuple(rules))


def unroutable_reason(rule_id: str, why: str) -> str:
    """The reason of a version FAILED because its rule sends it to a site no processor serves: `why`, after a
    prefix naming the rule, which the API's metrics read back (unroutable_rule)."""
    return "%s%s %s" % (UNROUTABLE, json.dumps(rule_id), why)


def unroutable_rule(reason: str) -> str | None:
    """The rule named by an unroutable_reason; None for any other reason."""
    if not reason.startswith(UNROUTABLE):
        return None
    try:
        rule_id, _ = json.JSONDecoder().raw_decode(reason, len(UNROUTABLE))
    except ValueError:
        return None
    return rule_id if isinstance(rule_id, str) else None


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


def _replicates_delete_markers(raw: dict) -> bool:
    """A V1 rule (no Filter) replicates delete markers, as S3 and Backbeat do; a V2 rule only when its
    DeleteMarkerReplication is Enabled (S3 requires the element with a Filter; without it, S3's V2 default: no)."""
    if "Filter" not in raw:
        return True
    return (raw.get("DeleteMarkerReplication") or {}).get("Status") == "Enabled"
