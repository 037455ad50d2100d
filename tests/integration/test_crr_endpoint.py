"""crr_endpoint on copies of CloudServer and Backbeat configuration files, driven through ansible-playbook."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from playbook import run_playbook

pytestmark = pytest.mark.integration

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")
FOUR_STEPS = ["check", "apply", "apply again", "check again"]
AWS_SITE = dict(name="aws-replicas", type="aws_s3", aws_endpoint="s3.eu-west-1.amazonaws.com",
                bucket="replica-bucket", region="eu-west-1", bucket_match=True, credentials_profile="aws_replicas")


@pytest.fixture
def files(tmp_path):
    """Copies of a CloudServer config.json, locationConfig.json and a Backbeat-shaped worker config."""
    paths = {
        "cloudserver_config": tmp_path / "cloudserver" / "config.json",
        "location_config": tmp_path / "cloudserver" / "locationConfig.json",
        "worker_config": tmp_path / "worker" / "config.json",
    }
    sources = {"cloudserver_config": ("cloudserver", "config.json"),
               "location_config": ("cloudserver", "locationConfig.json"),
               "worker_config": ("backbeat", "config.json")}
    for option, path in paths.items():
        path.parent.mkdir(exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, *sources[option]), path)
    return {option: str(path) for option, path in paths.items()}


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def snapshot(files):
    return {option: read(path) for option, path in files.items()}


def task(task_name, check=False, **options):
    entry = {"name": task_name, "backbeat.crr.crr_endpoint": options}
    if check:
        entry["check_mode"] = True
    return entry


def play(*tasks):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def four_steps(**options):
    return play(*[task(step, check=step.startswith("check"), **options) for step in FOUR_STEPS])


def changed_by_step(run):
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [run.result(step)["changed"] for step in FOUR_STEPS]


def bootstrap_list(files):
    return json.loads(read(files["worker_config"]))["extensions"]["replication"]["destination"]["bootstrapList"]


def replication_endpoints(files):
    return json.loads(read(files["cloudserver_config"]))["replicationEndpoints"]


def test_aws_site_is_written_to_all_three_files_once(files):
    run = run_playbook(four_steps(**AWS_SITE, **files))
    assert changed_by_step(run) == [True, True, False, False]
    assert replication_endpoints(files)[-1] == {"site": "aws-replicas", "type": "aws_s3"}
    location = json.loads(read(files["location_config"]))["aws-replicas"]
    assert location["type"] == "aws_s3" and location["objectId"] == "aws-replicas"
    assert location["details"]["bucketName"] == "replica-bucket"
    assert location["details"]["credentialsProfile"] == "aws_replicas"
    assert bootstrap_list(files)[-1]["site"] == "aws-replicas"
    assert sorted(run.result("apply")["files"]) == sorted(files.values())


def test_scality_site_is_written_and_rerun_unchanged(files):
    options = dict(name="paris", type="scality", servers=["10.1.0.5:8000", "10.1.0.6:8000"], **files)
    run = run_playbook(four_steps(**options))
    assert changed_by_step(run) == [True, True, False, False]
    assert replication_endpoints(files)[-1] == {"site": "paris", "servers": ["10.1.0.5:8000", "10.1.0.6:8000"]}
    assert bootstrap_list(files)[-1] == {"site": "paris", "servers": ["10.1.0.5:8000", "10.1.0.6:8000"]}
    assert "paris" not in json.loads(read(files["location_config"]))  # a Scality site has no location


def test_check_mode_writes_nothing_and_shows_the_diff(files):
    before = snapshot(files)
    run = run_playbook(play(task("check", **AWS_SITE, **files)), check=True, diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("check")["changed"] is True
    diffs = {diff["after_header"]: diff for diff in run.result("check")["diff"]}
    assert '"site": "aws-replicas"' in diffs[files["cloudserver_config"]]["after"]
    assert '"site": "aws-replicas"' not in diffs[files["cloudserver_config"]]["before"]
    assert snapshot(files) == before


def test_removing_a_site_restores_the_original_bytes(files):
    original = snapshot(files)
    assert run_playbook(play(task("add", **AWS_SITE, **files))).rc == 0
    assert snapshot(files) != original
    run = run_playbook(four_steps(name="aws-replicas", state="absent", **files))
    assert changed_by_step(run) == [True, True, False, False]
    assert snapshot(files) == original


def test_removing_an_existing_site_keeps_the_others(files):
    run = run_playbook(four_steps(name="us-east-2", state="absent", **files))
    assert changed_by_step(run) == [True, True, False, False]
    assert [e["site"] for e in replication_endpoints(files)] == ["zenko"]
    assert [e["site"] for e in bootstrap_list(files)] == ["zenko"]
    assert "us-east-2" in json.loads(read(files["location_config"]))  # a 'file' location, not ours to remove


def test_malformed_json_fails_and_no_file_is_touched(files):
    with open(files["worker_config"], "w") as handle:
        handle.write('{"extensions": {"replication": ')
    before = snapshot(files)
    run = run_playbook(play(task("bad file", **AWS_SITE, **files)))
    assert run.rc != 0
    assert "is not valid JSON" in run.result("bad file")["msg"]
    assert files["worker_config"] in run.result("bad file")["msg"]
    assert snapshot(files) == before


def test_backup_keeps_a_copy_of_each_changed_file(files):
    original = read(files["cloudserver_config"])
    run = run_playbook(play(task("backup", backup=True, **AWS_SITE, **files)))
    assert run.rc == 0, run.stdout[-3000:]
    backups = run.result("backup")["backup_files"]
    assert set(backups) == set(files.values())
    assert read(backups[files["cloudserver_config"]]) == original


def test_owner_and_mode_are_kept(files):
    os.chmod(files["location_config"], 0o600)
    assert run_playbook(play(task("add", **AWS_SITE, **files))).rc == 0
    assert stat.S_IMODE(os.stat(files["location_config"]).st_mode) == 0o600
    assert sorted(os.listdir(os.path.dirname(files["location_config"]))) == ["config.json", "locationConfig.json"]


def test_secret_keys_are_written_but_never_shown(files):
    site = dict(AWS_SITE, credentials_profile=None, access_key="AKIAEXAMPLEKEY", secret_key="s3cr3t-value-xyz")
    run = run_playbook(play(task("keys", **{k: v for k, v in site.items() if v is not None}, **files)), diff=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert "s3cr3t-value-xyz" not in run.stdout and "AKIAEXAMPLEKEY" not in run.stdout
    details = json.loads(read(files["location_config"]))["aws-replicas"]["details"]
    assert details["credentials"] == {"accessKey": "AKIAEXAMPLEKEY", "secretKey": "s3cr3t-value-xyz"}


def test_a_second_default_site_is_an_error(files):
    before = snapshot(files)
    run = run_playbook(play(task("second default", default=True, **AWS_SITE, **files)))
    assert "at most one site may have default: true" in run.result("second default")["msg"]
    assert snapshot(files) == before


def test_bad_server_address_is_an_error(files):
    run = run_playbook(play(task("bad server", name="paris", type="scality", servers=["10.1.0.5:80000"], **files)))
    assert run.result("bad server")["msg"].startswith("servers: '10.1.0.5:80000' is not host:port")
