"""Which components run a config: the source named by `queuePopulator.logSource`, the target of each site's
`type`, and the source's status sink. `cli.py` builds components only through here, and `check-config`
refuses through `problems()` what no component can run.
"""

from __future__ import annotations

import dataclasses

from crr_worker.config import ConfigError, SiteConfig, WorkerConfig

SITES_KEY = "extensions.replication.destination.bootstrapList"


def problems(config: WorkerConfig) -> list[ConfigError]:
    """What the components would refuse at start, found without starting them."""
    found = [problem for site in config.sites if (problem := _site_problem(config, site))]
    if config.cloudserver_source:
        source = config.source
        if source.endpoint is None:
            found.append(ConfigError("extensions.replication.source.endpoint", "a CloudServer source (logSource %s) "
                                     "needs its S3 endpoint URL" % config.log_source))
        if source.credentials.file is None and source.credentials.profile is None:
            found.append(ConfigError("extensions.replication.source.credentials", "a CloudServer source needs the "
                                     "replication service account's keys: set file and profile"))
    return found


def make_source(config: WorkerConfig, notifications: bool = True):
    """The configured source; `notifications=False` for components that only read versions (no feed client)."""
    pool = config.queue_processor.concurrency + config.queue_processor.part_concurrency * 2
    if config.cloudserver_source:
        from crr_worker.sources.cloudserver import CloudServerSource

        return CloudServerSource(config, _change_logs(config) if notifications else [], pool=pool)
    from crr_worker.sources.s3 import S3Source

    settings = config.source if notifications else dataclasses.replace(config.source, notification_queue_url=None)
    default = config.default_site()
    return S3Source(settings, default.site if default else None, pool=pool)


def make_target(config: WorkerConfig, site: SiteConfig):
    """The target writing replicas to `site`; ConfigError when it cannot be written to."""
    problem = _site_problem(config, site)
    if problem is not None:
        raise problem
    if site.type == "scality":
        from crr_worker.targets.scality import ScalityTarget

        return ScalityTarget(site, config.queue_processor)
    from crr_worker.targets.aws_s3 import AwsS3Target

    return AwsS3Target(site, config.queue_processor)


def _site_problem(config: WorkerConfig, site: SiteConfig) -> ConfigError | None:
    """Why no processor can replicate to `site` with this config; None when one can."""
    if site.type != "scality":
        return None
    key = "%s[%d]" % (SITES_KEY, config.sites.index(site))
    if not config.cloudserver_source:
        return ConfigError(key + ".type", "site %s is a scality site: replicas are written with the source's "
                           "CloudServer metadata, so the source must be a CloudServer (queuePopulator.logSource dmd "
                           "or bucketd)" % site.site)
    if not site.canonical_id:
        return ConfigError(key + ".canonicalId", "site %s is a scality site: give the canonical id of the target "
                           "account replicas belong to" % site.site)
    if site.credentials.file is None and site.credentials.profile is None:
        return ConfigError(key + ".credentials", "site %s is a scality site: give the target account's keys "
                           "(credentials file and profile, or credentialsProfile)" % site.site)
    return None


def make_status_sink(config: WorkerConfig):
    """Where outcomes go besides the ledger: into a CloudServer source's metadata; None for an s3 source."""
    if not config.cloudserver_source:
        return None
    from crr_worker.sources.cloudserver_status import CloudServerStatusWriter

    return CloudServerStatusWriter(config)


def _change_logs(config: WorkerConfig) -> list:
    if config.log_source == "dmd":
        from crr_worker.sources.record_log import DmdRecordLog

        return [DmdRecordLog(config.record_log)]
    from crr_worker.sources.bucketd_log import BucketdRaftLog

    return [BucketdRaftLog(config.record_log, session) for session in config.record_log.raft_sessions]
