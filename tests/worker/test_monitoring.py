"""The monitoring shipped with the collection: alert rules (promtool), the Grafana dashboard, and the metrics they
read from a live `crr-worker api` (the sandbox's Kafka and moto, real worker processes)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest
import yaml
from crr_worker import populator
from crr_worker.control import ControlWatch
from crr_worker.entries import COMPLETED, FAILED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.metrics import (
    DRAIN_WINDOW_S,
    OutcomeRate,
    ReplicationMetrics,
    pending_eta_s,
    render_pending_eta,
    render_scans,
)
from crr_worker.scan_report import RESYNC, STALE_AFTER_MS, ScanReport, is_scan_report

from tests.worker.harness import SITE, log_records, start_pipeline, wait_for
from tests.worker.test_api import _metric, start_api

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(REPO, "roles", "worker", "files", "prometheus", "crr-worker.rules.yml")
RULE_TESTS = os.path.join(REPO, "tests", "worker", "crr-worker.rules.test.yml")
DASHBOARD = os.path.join(REPO, "roles", "worker", "files", "grafana", "crr-worker-dashboard.json")
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every scrape job
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not on PATH: `apt-get install prometheus` (.ci/run installs it)")
    return found


def _rules() -> list[dict]:
    with open(RULES) as source:
        return [rule for group in yaml.safe_load(source)["groups"] for rule in group["rules"]]


def _expressions() -> list[str]:
    """Every PromQL expression of the rules and of the dashboard (panel targets and template queries)."""
    with open(DASHBOARD) as source:
        dashboard = json.load(source)
    found = [rule["expr"] for rule in _rules()]
    found += [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [variable["definition"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]
    return found


def _metric_names(expression: str) -> set[str]:
    """The metric names an expression reads: crr_* identifiers and the Prometheus-made series."""
    names = set(re.findall(r"\bcrr_[a-z0-9_]+\b", expression))
    return names | {name for name in PROMETHEUS_OWN if re.search(r"\b%s\{" % name, expression)}


def _exported(text: str) -> set[str]:
    """Names a /metrics page serves: each declared family (# TYPE), with _bucket/_sum/_count for histograms."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def test_promtool_accepts_the_alert_rules_and_each_has_a_summary_a_description_and_a_severity():
    checked = subprocess.run([_promtool(), "check", "rules", RULES], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for rule in _rules():
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert "crr-worker" in rule["annotations"]["description"], "%s names no command to run" % rule["alert"]


def test_promtool_unit_tests_fire_every_alert_and_leave_healthy_series_silent():
    tested = subprocess.run([_promtool(), "test", "rules", RULE_TESTS], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    with open(RULE_TESTS) as source:
        cases = [case for test in yaml.safe_load(source)["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    assert fired == {rule["alert"] for rule in _rules()}, "every alert needs a test where it fires"


def test_rpo_alerts_use_backbeats_thresholds():
    expressions = {rule["alert"]: rule["expr"] for rule in _rules()}
    assert expressions["CRROldestPendingVersionWarning"].endswith("> 600")
    assert expressions["CRROldestPendingVersionCritical"].endswith("> 900")


@pytest.mark.integration
def test_every_metric_of_the_rules_and_the_dashboard_is_declared_by_a_live_api_whose_metrics_promtool_accepts(pair):
    api = start_api(pair)
    text = api.get("/metrics").text
    named = set().union(*(_metric_names(expression) for expression in _expressions()))
    assert "crr_oldest_pending_age_seconds" in named and "crr_queued_versions_total" in named
    assert named - PROMETHEUS_OWN - _exported(text) == set()
    linted = subprocess.run([_promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.integration
def test_the_oldest_pending_age_grows_while_nothing_happens_and_is_zero_once_replicated(pair):
    (processor,) = start_pipeline(pair)
    api = start_api(pair)
    site = 'site="%s"' % SITE

    def age() -> float:
        return _metric(api.get("/metrics").text, "crr_oldest_pending_age_seconds", site)

    assert age() == 0
    assert api.post("/_/crr/pause/%s" % SITE).json()["paused"] is True
    wait_for(lambda: any(r.get("message") == "site paused" for r in log_records(processor)), 30, 0.3,
             "the processor to pause")  # else it may copy the version before it follows the pause
    pair.source.put_object(Bucket=pair.source_bucket, Key="held", Body=b"h")
    first = wait_for(lambda: age() or None, 60, 0.5, "a PENDING version in the age")
    wait_for(lambda: age() >= first + 3, 30, 0.5, "the age to grow with no ledger record written")
    assert api.post("/_/crr/resume/%s" % SITE).json()["paused"] is False
    pair.wait_all_done(90)
    wait_for(lambda: age() == 0, 30, 0.5, "the age back to 0 once replicated")


@pytest.mark.integration
def test_the_scan_logs_versions_listed_and_queued_per_bucket_and_the_api_counts_them(pair_factory):
    pair = pair_factory(notifications=False)
    for index in range(3):
        pair.source.put_object(Bucket=pair.source_bucket, Key="before-%d" % index, Body=b"b")
    api = start_api(pair)
    pair.workers.start("status-processor")
    scanner = pair.workers.start("populator")
    labels = 'bucket="%s",site="%s"' % (pair.source_bucket, SITE)
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_queued_versions_total", labels) == 3, 60, 0.5,
             "3 versions counted as queued")
    done = wait_for(lambda: [r for r in log_records(scanner) if r.get("message") == "scan of bucket done"], 30, 0.3,
                    "the scan's per-bucket line")
    assert (done[0]["bucket"], done[0]["listed"], done[0]["queued"]) == (pair.source_bucket, 3, 3)
    started = finished_listing_metrics(api, 'bucket="%s",kind="scan"' % pair.source_bucket, 3)
    assert 0 < started


def finished_listing_metrics(api, labels: str, versions: int) -> float:
    """Wait for a listing's report (scan or resync) of `versions` listed under `labels` in the API's metrics, then
    check it queued them all, is no longer running, and was updated at or after its start and not in the future;
    returns its start time."""
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_scan_listed_versions", labels) == versions, 30, 0.5,
             "the listing's report in the metrics")
    metrics = api.get("/metrics").text
    assert _metric(metrics, "crr_scan_queued_versions", labels) == versions
    assert _metric(metrics, "crr_scan_running", labels) == 0
    started = _metric(metrics, "crr_scan_started_timestamp_seconds", labels)
    assert started <= _metric(metrics, "crr_scan_updated_timestamp_seconds", labels) <= time.time()
    return started


def test_a_long_scan_logs_its_progress_as_it_lists(monkeypatch, caplog):
    monkeypatch.setattr(populator, "SCAN_PROGRESS_EVERY_S", 0.0)  # due at every version: no waiting on a clock
    progress = populator.ScanProgress("bucket-a")
    with caplog.at_level(logging.INFO, logger="crr_worker.populator"):
        for _ in progress.counted(["v1", "v2"]):
            progress.queued += 1
    lines = [(r.getMessage(), r.fields["listed"], r.fields["queued"]) for r in caplog.records]
    assert lines == [("scan progress", 1, 0), ("scan progress", 2, 1)]


def test_the_scan_reports_each_progress_line_and_its_end_and_a_silent_running_scan_is_not_counted_running():
    reported = []
    progress = populator.ScanProgress("bucket-a", report=lambda p, running: reported.append((p.listed, running)))
    progress.listed = 5
    progress.log("scan progress")
    progress.log("scan of bucket done", running=False)
    assert reported == [(5, True), (5, False)]

    running = ScanReport("bucket-a", listed=5, queued=2, running=True, started_at=1_000, updated_at=2_000)
    assert ScanReport.from_kafka(running.to_kafka()[1]) == running
    assert running.running_at(2_000 + STALE_AFTER_MS - 1) and not running.running_at(2_000 + STALE_AFTER_MS)
    assert render_scans([running], now_ms=2_500)[2:3] == ['crr_scan_running{bucket="bucket-a",kind="scan"} 1']


def test_a_report_of_each_kind_has_its_own_key_and_a_control_watch_keeps_both_apart_from_the_sites_states():
    scan = ScanReport("b", listed=1, queued=1, running=False, started_at=1, updated_at=2)
    resync = ScanReport("b", listed=2, queued=0, running=True, started_at=1, updated_at=2, kind=RESYNC)
    assert [report.to_kafka()[0] for report in (scan, resync)] == [b"scan/b", b"resync/b"]
    assert ScanReport.from_kafka(resync.to_kafka()[1]) == resync
    assert not is_scan_report(b"site-a") and not is_scan_report(b"rescan/b") and not is_scan_report(None)
    assert ScanReport.from_kafka(b'{"kind": "other", "bucket": "b", "listed": 1, "queued": 1, "running": true, '
                                 b'"startedAt": 1, "updatedAt": 2}') is None

    records = [SimpleNamespace(key=k, value=v) for k, v in (scan.to_kafka(), resync.to_kafka())]
    records.append(SimpleNamespace(key=b"site-a", value=b'{"site": "site-a", "paused": true, "updatedAt": 3}'))
    watch = ControlWatch(config=None)
    watch.consumer = SimpleNamespace(poll=lambda timeout_ms: {"partition": records})
    watch.refresh()
    assert watch.scans == {("scan", "b"): scan, ("resync", "b"): resync}
    assert set(watch.sites) == {"site-a"} and watch.paused("site-a")


@pytest.mark.parametrize("pending, rate, eta", [(0, 0.0, 0.0), (0, 4.0, 0.0), (10, 0.0, None), (10, 2.0, 5.0),
                                                (1, 1 / DRAIN_WINDOW_S, float(DRAIN_WINDOW_S))])
def test_the_pending_eta_is_zero_with_none_pending_and_none_while_nothing_is_done(pending, rate, eta):
    assert pending_eta_s(pending, rate) == eta


def test_the_outcome_rate_counts_by_the_time_records_were_written_over_the_last_window_only():
    rate = OutcomeRate(window_s=10)
    for at_ms in (990, 991_000, 995_500, 999_999, 1_000_000):  # the first: history long gone, never counted
        rate.add("s1", at_ms, now_s=1_000.0)
    assert rate.rates(1_000.0) == {"s1": 0.4}  # seconds 991 .. 1000: 4 records in 10 s
    assert rate.rates(1_001.0) == {"s1": 0.3}  # second 991 left the window
    assert rate.rates(2_000.0) == {"s1": 0.0} and rate.seconds == {"s1": {}}


def test_completed_and_failed_records_drain_pending_versions_and_pending_marks_do_not():
    now = [1_000.0]
    metrics = ReplicationMetrics(clock=lambda: now[0])
    entry = ReplicationEntry(bucket="b", key="k", version_id="v1", sites=("s1",))
    for state in (PENDING, COMPLETED, FAILED, COMPLETED):
        metrics.observe(StatusEntry(entry, "s1", state, updated_at=999_000))
    assert metrics.outcome_rates() == {"s1": 3 / DRAIN_WINDOW_S}
    now[0] += DRAIN_WINDOW_S
    assert metrics.outcome_rates() == {"s1": 0.0}
    metrics.observe(StatusEntry(entry, "s1", COMPLETED, updated_at=1_299_000))
    metrics.reset()
    assert metrics.outcome_rates() == {}


def test_the_pending_eta_has_no_sample_while_nothing_drains_the_site_is_paused_or_the_ledger_loads():
    pending = {"done": 0, "draining": 30, "stalled": 5, "paused": 5, "idle-paused": 0}
    rates = {"draining": 3.0, "paused": 1.0}
    paused = {"paused": True, "idle-paused": True}
    lines = render_pending_eta(pending, rates, paused, ["done", "draining", "stalled", "paused", "idle-paused", "new"],
                               ready=True)
    assert lines[2:] == ['crr_pending_eta_seconds{site="%s"} %s' % sample for sample in
                         (("done", "0.000"), ("draining", "10.000"), ("idle-paused", "0.000"), ("new", "0.000"))]
    assert render_pending_eta(pending, rates, paused, ["draining"], ready=False) == lines[:2]


@pytest.mark.integration
def test_the_pending_eta_is_the_pending_versions_over_the_rate_done_and_zero_once_drained(pair):
    """3 versions replicated, then the processor stopped and 2 more written: 2 PENDING at 3 outcomes in the last
    DRAIN_WINDOW_S. The test takes well under that window, so no outcome leaves it."""
    (processor,) = start_pipeline(pair)
    api = start_api(pair)
    site = 'site="%s"' % SITE
    for index in range(3):
        pair.source.put_object(Bucket=pair.source_bucket, Key="done-%d" % index, Body=b"d")
    pair.wait_all_done(90)
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_completions_total", site) == 3, 30, 0.5,
             "3 completions seen by the API")
    assert _metric(api.get("/metrics").text, "crr_pending_eta_seconds", site) == 0
    pair.workers.terminate(processor)
    for index in range(2):
        pair.source.put_object(Bucket=pair.source_bucket, Key="waiting-%d" % index, Body=b"w")
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_versions", site + ',status="PENDING"') == 2, 60, 0.5,
             "2 PENDING versions")
    assert _metric(api.get("/metrics").text, "crr_pending_eta_seconds", site) == pytest.approx(2 * DRAIN_WINDOW_S / 3)
    pair.workers.start("processor", "--site", SITE, name="processor")
    pair.wait_all_done(90)
    wait_for(lambda: _metric(api.get("/metrics").text, "crr_pending_eta_seconds", site) == 0, 30, 0.5,
             "the ETA back to 0 once drained")
