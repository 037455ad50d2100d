"""`crr-worker`: one subcommand per component or operation, each a thin call into it.

Exit codes (scripts and Ansible tasks test them, docs/worker.md lists them too):
  0  success (`failed` with nothing FAILED included)
  1  failure (an unexpected error, a resync stopped before its end)
  2  invalid configuration or usage
  3  not found: `status` of an object or version the ledger holds no status of
  4  Kafka unreachable: no broker of `kafka.hosts` answered `status`, `failed` or `retry` within 10 s
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone

from crr_worker import __version__
from crr_worker.config import ConfigError, WorkerConfig, load_config
from crr_worker.logs import setup

DEFAULT_CONFIG = "/etc/crr-worker/config.json"
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_NOT_FOUND = 3
EXIT_KAFKA_UNREACHABLE = 4
KAFKA_CONNECT_TIMEOUT_S = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config_file or args.config)
    except ConfigError as exc:
        print("crr-worker: invalid configuration: %s" % exc, file=sys.stderr)
        return EXIT_CONFIG
    setup(config.log_level)
    try:
        return args.run(config, args)
    except ConfigError as exc:
        print("crr-worker: invalid configuration: %s" % exc, file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 - one JSON line for the journal, then a non-zero exit
        logging.getLogger("crr_worker").exception("fatal error", extra={"fields": {"command": args.command}})
        return EXIT_FATAL if not isinstance(exc, KeyboardInterrupt) else 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crr-worker", description="S3 Cross-Region Replication worker",
                                     epilog="exit codes: 0 ok, 1 failure, 2 invalid configuration or usage, "
                                     "3 not found, 4 Kafka unreachable")
    parser.add_argument("--version", action="version", version="crr-worker %s" % __version__,
                        help="print crr-worker's version and exit")
    parser.add_argument("--config", default=os.environ.get("CRR_WORKER_CONFIG", DEFAULT_CONFIG),
                        help="config file (default: $CRR_WORKER_CONFIG or %s)" % DEFAULT_CONFIG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="what to run; `crr-worker COMMAND --help` tells more")
    _add_components(commands)
    _add_read_commands(commands)
    _add_requeue_commands(commands)
    _add_verify(commands)
    return parser


def _add_components(commands) -> None:
    """check-config and the long-running components the role's systemd units start."""
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config_file", nargs="?", help="the file to check (default: --config)")
    check.set_defaults(run=_check_config)
    for name, run, helptext in (("populator", _populator, "source changes -> replication topic"),
                                ("status-processor", _status_processor, "outcomes -> ledger"),
                                ("api", _api, "HTTP API: health, metrics, failed/retry, status, pause/resume")):
        commands.add_parser(name, help=helptext).set_defaults(run=run, config_file=None)
    processor = commands.add_parser("processor", help="replicate entries to one site")
    processor.add_argument("--site", required=True, help="the site of the bootstrapList to replicate to")
    processor.set_defaults(run=_processor, config_file=None)


def _add_read_commands(commands) -> None:
    """status and failed: they read the ledger and create nothing, not even a missing topic."""
    status = commands.add_parser("status", help="print the replication status of an object's versions "
                                 "(exit 3 when none is recorded)")
    status.add_argument("bucket", help="the source bucket")
    status.add_argument("key", help="the object key")
    status.add_argument("--version-id", help="only this version (default: every version of the key)")
    status.add_argument("--site", help="only this site (default: every site)")
    _add_json(status)
    status.set_defaults(run=_status, config_file=None)
    failed = commands.add_parser("failed", help="list FAILED versions, oldest first")
    failed.add_argument("--site", help="only this site (default: every site)")
    failed.add_argument("--bucket", help="only this source bucket (default: every bucket)")
    _add_json(failed)
    failed.set_defaults(run=_failed, config_file=None)


def _add_json(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true", help="one JSON object per status and line (the API's "
                         "fields, times in epoch milliseconds) instead of a table")


def _add_requeue_commands(commands) -> None:
    """retry and resync: they queue versions again."""
    retry = commands.add_parser("retry", help="re-queue FAILED versions: one version, a key, a bucket, or --all")
    retry.add_argument("--bucket", help="the FAILED versions of this source bucket")
    retry.add_argument("--key", help="... of this key only (with --bucket)")
    retry.add_argument("--version-id", help="... of this version only (with --bucket and --key)")
    retry.add_argument("--site", help="only for this site (default: every site)")
    retry.add_argument("--all", action="store_true", help="every FAILED version")
    retry.set_defaults(run=_retry, config_file=None)

    resync = commands.add_parser("resync", help="re-queue a bucket's versions for the sites its replication sends "
                                 "them to: an s3 source's every version, whatever the ledger says; a CloudServer "
                                 "source's versions whose metadata is PENDING or FAILED (all of them with --all)")
    resync.add_argument("--bucket", required=True, help="the source bucket whose versions to re-queue")
    resync.add_argument("--site", help="only this site (default: every site of the config)")
    resync.add_argument("--since", type=_iso8601, help="only versions last modified at or after this ISO 8601 "
                        "time, e.g. 2026-11-21T08:00:00Z (UTC when no zone)")
    resync.add_argument("--all", action="store_true", dest="every", help="CloudServer source: every version its "
                        "metadata sends to a site, COMPLETED ones too (an s3 source's resync always takes all)")
    resync.set_defaults(run=_resync, config_file=None)

def _add_verify(commands) -> None:
    """verify: reads both sides; --repair queues what is missing or wrong."""
    verify = commands.add_parser("verify", help="compare a source bucket with its replica on each site, version by "
                                 "version; exit 0 only when they agree")
    verify.add_argument("--bucket", required=True, help="the source bucket to verify")
    verify.add_argument("--site", help="only this site (default: every configured site the bucket's rules name)")
    verify.add_argument("--prefix", default="", help="only keys starting with this prefix")
    verify.add_argument("--json", action="store_true", help="one JSON line per difference, then one per site "
                        "with the counts")
    verify.add_argument("--repair", action="store_true", help="re-queue the source versions missing or wrong on "
                        "the target as new replication entries")
    verify.set_defaults(run=_verify, config_file=None)


def _check_config(config: WorkerConfig, args) -> int:
    from crr_worker.registry import problems

    found = problems(config)
    for problem in found:
        print("crr-worker: invalid configuration: %s" % problem, file=sys.stderr)
    if found:
        return EXIT_CONFIG
    print("configuration OK: %s source, %d site(s): %s" % (config.log_source, len(config.sites),
                                                            ", ".join(s.site for s in config.sites)))
    return 0


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: every component loop watches it and winds down."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _populator(config: WorkerConfig, args) -> int:
    from crr_worker.populator import Populator
    from crr_worker.registry import make_source

    stop = _stop_on_signals()
    source = make_source(config)
    try:
        Populator(config, source, stop).run()
    finally:
        source.close()
    return 0


def _processor(config: WorkerConfig, args) -> int:
    from crr_worker.processor import Processor
    from crr_worker.registry import make_source, make_target

    site = config.site(args.site)
    target = make_target(config, site)
    source = make_source(config, notifications=False)
    stop = _stop_on_signals()
    try:
        Processor(config, site.site, source, target, stop).run()
    finally:
        target.close()
        source.close()
    return 0


def _status_processor(config: WorkerConfig, args) -> int:
    from crr_worker.registry import make_status_sink
    from crr_worker.status import StatusProcessor

    StatusProcessor(config, _stop_on_signals(), make_status_sink(config)).run()
    return 0


def _api(config: WorkerConfig, args) -> int:
    from crr_worker.api import serve

    serve(config, _stop_on_signals())
    return 0


def _read_ledger(config: WorkerConfig) -> dict | None:
    """The ledger for status, failed and retry, creating nothing (no ledger topic: no status, nothing to retry);
    None (after one line on stderr) when Kafka does not answer. kafka-python's own warnings are silenced: they
    would repeat every reconnection for 10 s."""
    from crr_worker.ledger import KafkaUnreachable, read_existing_ledger

    logging.getLogger("kafka").setLevel(logging.CRITICAL + 1)
    try:
        return read_existing_ledger(config, KAFKA_CONNECT_TIMEOUT_S)
    except KafkaUnreachable as exc:
        print("crr-worker: cannot reach Kafka at %s (kafka.hosts): %s" % (",".join(config.kafka.hosts), exc),
              file=sys.stderr)
        return None


def _status(config: WorkerConfig, args) -> int:
    from crr_worker.cli_output import status_lines
    from crr_worker.ledger import find

    ledger = _read_ledger(config)
    if ledger is None:
        return EXIT_KAFKA_UNREACHABLE
    found = find(ledger, args.bucket, args.key, args.version_id, args.site)
    if not found:
        print("crr-worker status: no status recorded for %s" % _object_name(args), file=sys.stderr)
        return EXIT_NOT_FOUND
    print("\n".join(status_lines(found, args.json)))
    return 0


def _object_name(args) -> str:
    """The object `status` asked for, as the error names it."""
    name = "%s/%s" % (args.bucket, args.key)
    if args.version_id:
        name += " version %s" % args.version_id
    return name + (" on site %s" % args.site if args.site else "")


def _failed(config: WorkerConfig, args) -> int:
    from crr_worker.cli_output import status_lines
    from crr_worker.ledger import failed

    ledger = _read_ledger(config)
    if ledger is None:
        return EXIT_KAFKA_UNREACHABLE
    lines = status_lines(failed(ledger, args.site, args.bucket), args.json)
    if lines:
        print("\n".join(lines))
    return 0


def _retry(config: WorkerConfig, args) -> int:
    from crr_worker.kafka_io import make_producer
    from crr_worker.ledger import failed
    from crr_worker.status import requeue

    if not args.all and not args.bucket:
        print("crr-worker retry: give --bucket [--key [--version-id]] or --all", file=sys.stderr)
        return EXIT_CONFIG
    ledger = _read_ledger(config)
    if ledger is None:
        return EXIT_KAFKA_UNREACHABLE
    chosen = failed(ledger, args.site, args.bucket, args.key, args.version_id)
    if not chosen:
        print("re-queued 0 version(s)")
        return 0
    producer = make_producer(config)
    try:
        print("re-queued %d version(s)" % requeue(config, producer, chosen))
    finally:
        producer.close(timeout=5)
    return 0


def _iso8601(text: str) -> datetime:
    """`--since`: an ISO 8601 time; one without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("not an ISO 8601 time: %r (e.g. 2026-11-21T08:00:00Z)" % text) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _resync(config: WorkerConfig, args) -> int:
    from crr_worker.resync import resync
    from crr_worker.resync_progress import ResyncError, ResyncRefused

    stop = _stop_on_signals()
    try:
        counts = resync(config, args.bucket, args.site, args.since, stop, every=args.every)
    except ResyncError as exc:
        print("crr-worker resync: %s" % exc, file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ResyncRefused) else EXIT_FATAL
    print("re-queued %d of %d version(s) of bucket %s%s" % (counts.queued, counts.listed, args.bucket,
                                                             " (stopped before the end)" if stop.is_set() else ""))
    return EXIT_FATAL if stop.is_set() else 0


def _verify(config: WorkerConfig, args) -> int:
    from crr_worker.verify import VerifyError, VerifyRefused, verify

    def emit(finding, report) -> None:
        if args.json:
            print(json.dumps({"finding": finding.kind, "bucket": report.bucket, "site": report.site,
                              "target_bucket": report.target_bucket, "key": finding.key,
                              "version_id": finding.version_id, "target_version_id": finding.target_version_id,
                              "detail": finding.detail}, ensure_ascii=False))
        else:
            print("%s %s %s: %s" % (finding.kind, finding.key, finding.version_id or finding.target_version_id,
                                    finding.detail))

    try:
        reports = verify(config, args.bucket, args.site, args.prefix, args.repair, emit)
    except VerifyError as exc:
        print("crr-worker verify: %s" % exc, file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, VerifyRefused) else EXIT_FATAL
    for report in reports:
        print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 0 if all(report.agree for report in reports) else EXIT_FATAL
