# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Filter worker_bootstrap_list: the worker's bootstrapList from the playbook's site list.

It builds each entry with the same code crr_endpoint writes into config files, so the
sites the worker knows and the sites CloudServer knows cannot drift apart.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.backbeat.crr.plugins.module_utils.site_config import (
    Site,
    SiteConfigError,
    apply_bootstrap_entry,
    validate_site,
)

# crr_endpoint option names accepted in a site of the list; anything else is a typo to report.
_OPTIONS = set(Site.__dataclass_fields__)


def worker_bootstrap_list(sites):
    """List of bootstrapList entries for sites (dicts of crr_endpoint options)."""
    if not isinstance(sites, list):
        raise AnsibleFilterError("worker_bootstrap_list: expects a list of sites, got %s" % type(sites).__name__)
    config = {}
    for index, options in enumerate(sites):
        where = "sites[%d]" % index
        if not isinstance(options, dict):
            raise AnsibleFilterError("worker_bootstrap_list: %s must be a dict of crr_endpoint options" % where)
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise AnsibleFilterError("worker_bootstrap_list: %s has unknown option(s) %s; known: %s"
                                     % (where, ", ".join(unknown), ", ".join(sorted(_OPTIONS))))
        site = Site(**options)
        if site.type == "scality" and not (site.canonical_id and site.credentials_profile):
            raise AnsibleFilterError("worker_bootstrap_list: %s (%s): a scality site needs canonical_id (the target "
                                     "account replicas belong to) and credentials_profile (its keys in the worker's "
                                     "credentials, worker_credentials)" % (where, options.get("name")))
        try:
            validate_site(site, "present", needs_aws_details=True)
            config = apply_bootstrap_entry(config, site, "present")
        except SiteConfigError as exc:
            raise AnsibleFilterError("worker_bootstrap_list: %s (%s): %s" % (where, options.get("name"), exc)) from exc
    return config.get("extensions", {}).get("replication", {}).get("destination", {}).get("bootstrapList", [])


class FilterModule:
    def filters(self):
        return {"worker_bootstrap_list": worker_bootstrap_list}
