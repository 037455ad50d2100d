"""Replication site editing of CloudServer config.json, locationConfig.json and the worker config; JSON files."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat

import pytest
from ansible_collections.backbeat.crr.plugins.module_utils import json_file
from ansible_collections.backbeat.crr.plugins.module_utils.site_config import (
    MASK,
    Site,
    SiteConfigError,
    apply_bootstrap_entry,
    apply_location,
    apply_replication_endpoint,
    check_server,
    mask_secrets,
    site_types,
    validate_site,
)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return json.load(handle)


def scality(name="paris", **options):
    return Site(name=name, type="scality", servers=options.pop("servers", ["10.0.0.5:8000"]), **options)


def aws(name="aws-site", **options):
    defaults = dict(aws_endpoint="s3.amazonaws.com", bucket="replicas", region="eu-west-1",
                    credentials_profile="aws_profile")
    defaults.update(options)
    return Site(name=name, type="aws_s3", **defaults)


def error_of(call, *args, **kwargs):
    with pytest.raises(SiteConfigError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------ site validation


@pytest.mark.parametrize("server", ["10.0.0.5:8000", "host-1.example.com:1", "[::1]:65535", "s3:443"])
def test_host_port_servers_are_accepted(server):
    check_server(server)


@pytest.mark.parametrize("server", ["10.0.0.5", "host:0", "host:65536", ":8000", "host:port", "a b:80", ""])
def test_servers_that_are_not_host_port_are_an_error(server):
    assert error_of(check_server, server).startswith("servers: %r is not host:port" % server)


def test_scality_site_needs_servers():
    assert error_of(validate_site, scality(servers=[]), "present", False).startswith("servers: a scality site needs")


def test_scality_site_rejects_aws_options():
    assert error_of(validate_site, scality(bucket="b"), "present", False).startswith("bucket: applies to type aws_s3")


def test_aws_site_rejects_servers():
    assert error_of(validate_site, aws(servers=["h:1"]), "present", True).startswith("servers: applies to type scality")


def test_aws_site_needs_endpoint_and_bucket_for_location_or_worker():
    assert error_of(validate_site, aws(aws_endpoint=None), "present", True).startswith("aws_endpoint: required")
    assert error_of(validate_site, aws(bucket=None), "present", True).startswith("bucket: required")
    validate_site(Site(name="x", type="aws_s3"), "present", False)  # config.json needs only {site, type}


def test_aws_site_needs_credentials_for_location_or_worker():
    message = error_of(validate_site, aws(credentials_profile=None), "present", True)
    assert message.startswith("credentials_profile: an aws_s3 site needs credentials_profile or access_key/secret_key")


def test_aws_site_profile_and_keys_are_exclusive():
    message = error_of(validate_site, aws(access_key="A", secret_key="S"), "present", True)
    assert message.startswith("credentials_profile: give either")


def test_unknown_type_is_an_error():
    assert error_of(validate_site, Site(name="x", type="azure"), "present", False).startswith("type: must be one of")


def test_absent_needs_only_a_name():
    validate_site(Site(name="x"), "absent", True)


# ------------------------------------------------------------------------------------------ config.json


def test_scality_site_is_appended_to_replication_endpoints_and_the_rest_is_kept():
    config = fixture("cloudserver", "config.json")
    updated = apply_replication_endpoint(config, scality(), "present")
    assert updated["replicationEndpoints"][-1] == {"site": "paris", "servers": ["10.0.0.5:8000"]}
    assert updated["replicationEndpoints"][:2] == config["replicationEndpoints"]
    assert {k: v for k, v in updated.items() if k != "replicationEndpoints"} == \
        {k: v for k, v in config.items() if k != "replicationEndpoints"}
    assert list(updated) == list(config)


def test_aws_site_is_written_as_site_and_type():
    updated = apply_replication_endpoint({}, aws(), "present")
    assert updated == {"replicationEndpoints": [{"site": "aws-site", "type": "aws_s3"}]}


def test_existing_site_changes_type_in_place_keeping_unknown_keys():
    config = {"replicationEndpoints": [{"site": "s", "servers": ["h:1"], "echo": False},
                                       {"site": "t", "type": "aws_s3"}]}
    updated = apply_replication_endpoint(config, aws(name="s"), "present")
    assert updated["replicationEndpoints"] == [{"site": "s", "echo": False, "type": "aws_s3"},
                                               {"site": "t", "type": "aws_s3"}]


def test_applying_the_same_site_twice_gives_the_same_document():
    once = apply_replication_endpoint(fixture("cloudserver", "config.json"), scality(), "present")
    assert apply_replication_endpoint(once, scality(), "present") == once


def test_absent_removes_the_site_only():
    config = fixture("cloudserver", "config.json")
    updated = apply_replication_endpoint(config, Site(name="us-east-2"), "absent")
    assert [e["site"] for e in updated["replicationEndpoints"]] == ["zenko"]


def test_second_default_is_an_error_naming_both_sites():
    message = error_of(apply_replication_endpoint, fixture("cloudserver", "config.json"),
                       scality(default=True), "present")
    assert "sites zenko, paris are all default; at most one site may have default: true" in message


def test_default_moves_when_the_default_site_is_updated():
    config = fixture("cloudserver", "config.json")
    updated = apply_replication_endpoint(config, scality(name="zenko", servers=["127.0.0.1:8000"]), "present")
    assert "default" not in updated["replicationEndpoints"][0]


def test_existing_entry_of_a_type_cloudserver_rejects_is_an_error():
    config = {"replicationEndpoints": [{"site": "x", "type": "ftp"}]}
    message = error_of(apply_replication_endpoint, config, scality(), "present", label="cloudserver_config (c.json)")
    assert message.startswith("cloudserver_config (c.json): replicationEndpoints[0]: type 'ftp' is not one CloudServer")


def test_duplicate_site_names_in_the_file_are_an_error():
    config = {"replicationEndpoints": [{"site": "x", "type": "aws_s3"}, {"site": "x", "type": "aws_s3"}]}
    assert "declared 2 times" in error_of(apply_replication_endpoint, config, Site(name="x", type="aws_s3"), "present")
    assert "declared twice" in error_of(apply_replication_endpoint, config, scality(), "present")


def test_replication_endpoints_that_is_not_a_list_is_an_error():
    assert "replicationEndpoints must be a list" in error_of(
        apply_replication_endpoint, {"replicationEndpoints": {}}, scality(), "present")


def test_site_types_reads_types_and_the_default_site():
    types = site_types(fixture("cloudserver", "config.json"))
    assert types == {"zenko": "scality", "us-east-2": "aws_s3", "": "scality"}


# ------------------------------------------------------------------------------------ locationConfig


def test_aws_site_becomes_an_aws_s3_location():
    updated = apply_location(fixture("cloudserver", "locationConfig.json"), aws(), "present")
    assert updated["aws-site"] == {
        "type": "aws_s3", "objectId": "aws-site", "legacyAwsBehavior": False,
        "details": {"awsEndpoint": "s3.amazonaws.com", "bucketName": "replicas", "bucketMatch": False,
                    "credentialsProfile": "aws_profile", "serverSideEncryption": False, "https": True,
                    "pathStyle": False, "supportsVersioning": True}}


def test_access_keys_become_location_credentials():
    site = aws(credentials_profile=None, access_key="AK", secret_key="SK")
    details = apply_location({}, site, "present")["aws-site"]["details"]
    assert details["credentials"] == {"accessKey": "AK", "secretKey": "SK"}
    assert "credentialsProfile" not in details


def test_updating_a_location_keeps_its_object_id_and_unknown_details():
    config = fixture("cloudserver", "locationConfig.json")
    config["awsbackend"]["objectId"] = "b2b1c1e2-0000-4000-8000-000000000001"
    config["awsbackend"]["details"]["proxy"] = "http://proxy:3128"
    updated = apply_location(config, aws(name="awsbackend", bucket_match=True), "present")
    assert updated["awsbackend"]["objectId"] == "b2b1c1e2-0000-4000-8000-000000000001"
    assert updated["awsbackend"]["details"]["proxy"] == "http://proxy:3128"
    assert updated["awsbackend"]["details"]["bucketName"] == "replicas"


def test_new_location_gets_a_unique_stable_object_id_when_its_name_is_taken():
    config = {"other": {"type": "file", "objectId": "aws-site", "legacyAwsBehavior": False, "details": {}}}
    first = apply_location(config, aws(), "present")["aws-site"]["objectId"]
    assert first != "aws-site"
    assert apply_location(config, aws(), "present")["aws-site"]["objectId"] == first


def test_duplicate_object_ids_are_an_error():
    config = {"a": {"type": "file", "objectId": "same"}, "b": {"type": "file", "objectId": "same"}}
    assert "share objectId 'same'" in error_of(apply_location, config, aws(), "present")


def test_scality_site_leaves_the_location_file_unchanged():
    config = fixture("cloudserver", "locationConfig.json")
    assert apply_location(config, scality(), "present") == config


def test_absent_removes_an_aws_location_but_not_a_file_location():
    config = fixture("cloudserver", "locationConfig.json")
    assert "awsbackend" not in apply_location(config, Site(name="awsbackend"), "absent")
    assert apply_location(config, Site(name="us-east-2"), "absent") == config


# -------------------------------------------------------------------------------------- worker config


def bootstrap(config):
    return config["extensions"]["replication"]["destination"]["bootstrapList"]


def test_scality_site_is_a_backbeat_bootstrap_entry():
    updated = apply_bootstrap_entry(fixture("backbeat", "config.json"), scality(), "present")
    assert bootstrap(updated)[-1] == {"site": "paris", "servers": ["10.0.0.5:8000"]}


def test_scality_bootstrap_entry_carries_the_target_account_and_its_keys_profile():
    site = scality(canonical_id="79a59df9", display_name="Bart", credentials_profile="paris")
    updated = apply_bootstrap_entry({}, site, "present")
    assert bootstrap(updated) == [{"site": "paris", "servers": ["10.0.0.5:8000"], "canonicalId": "79a59df9",
                                   "displayName": "Bart", "credentialsProfile": "paris"}]


def test_a_scality_site_reached_over_https_says_so_in_its_bootstrap_entry_and_going_back_to_http_drops_it():
    over_https = apply_bootstrap_entry({}, scality(https=True), "present")
    assert bootstrap(over_https) == [{"site": "paris", "servers": ["10.0.0.5:8000"], "https": True}]
    assert bootstrap(apply_bootstrap_entry(over_https, scality(https=False), "present")) == [
        {"site": "paris", "servers": ["10.0.0.5:8000"]}]


@pytest.mark.parametrize("site", [scality, aws], ids=["scality", "aws_s3"])
def test_a_site_replicating_version_deletes_says_so_in_its_bootstrap_entry_and_turning_it_off_drops_it(site):
    on = apply_bootstrap_entry({}, site(replicate_version_deletes=True), "present")
    assert bootstrap(on)[0]["replicateVersionDeletes"] is True
    assert "replicateVersionDeletes" not in bootstrap(apply_bootstrap_entry(on, site(), "present"))[0]


def test_the_target_account_options_apply_to_scality_sites_only():
    assert error_of(validate_site, aws(canonical_id="x"), "present", True).startswith(
        "canonical_id: applies to type scality only")


def test_aws_site_bootstrap_entry_carries_what_the_worker_needs():
    updated = apply_bootstrap_entry(fixture("backbeat", "config.json"), aws(name="us-east-2"), "present")
    assert bootstrap(updated)[1] == {
        "site": "us-east-2", "type": "aws_s3", "awsEndpoint": "s3.amazonaws.com", "bucketName": "replicas",
        "region": "eu-west-1", "bucketMatch": False, "credentialsProfile": "aws_profile", "https": True,
        "pathStyle": False}


def test_existing_bootstrap_entry_keeps_echo():
    updated = apply_bootstrap_entry(fixture("backbeat", "config.json"), scality(name="zenko"), "present")
    assert bootstrap(updated)[0] == {"site": "zenko", "servers": ["10.0.0.5:8000"], "echo": False}


def test_bootstrap_list_is_created_in_an_empty_worker_config():
    updated = apply_bootstrap_entry({}, scality(), "present")
    assert bootstrap(updated) == [{"site": "paris", "servers": ["10.0.0.5:8000"]}]


def test_absent_removes_the_bootstrap_entry():
    updated = apply_bootstrap_entry(fixture("backbeat", "config.json"), Site(name="zenko"), "absent")
    assert [entry["site"] for entry in bootstrap(updated)] == ["us-east-2"]


def test_bootstrap_list_that_is_not_a_list_is_an_error():
    config = {"extensions": {"replication": {"destination": {"bootstrapList": "zenko"}}}}
    assert "bootstrapList must be a list" in error_of(apply_bootstrap_entry, config, scality(), "present")


# ------------------------------------------------------------------------------------------- secrets


def test_mask_secrets_hides_access_and_secret_keys_anywhere():
    data = {"a": {"details": {"credentials": {"accessKey": "AK", "secretKey": "SK"}}}, "l": [{"secretKey": "x"}]}
    assert mask_secrets(data) == {"a": {"details": {"credentials": {"accessKey": MASK, "secretKey": MASK}}},
                                  "l": [{"secretKey": MASK}]}


# ------------------------------------------------------------------------------------------ json_file


def test_rendering_a_loaded_fixture_gives_its_bytes_back():
    for parts in (("cloudserver", "config.json"), ("cloudserver", "locationConfig.json"), ("backbeat", "config.json")):
        path = os.path.join(FIXTURES, *parts)
        data, text = json_file.load(path)
        assert json_file.render(data, json_file.detect_indent(text)) == text


def test_detect_indent_reads_two_space_files():
    assert json_file.detect_indent('{\n  "a": 1\n}\n') == 2
    assert json_file.detect_indent("{}") == 4


def test_malformed_json_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"port": 8000,,}')
    with pytest.raises(json_file.JsonFileError, match="config.json is not valid JSON"):
        json_file.load(str(path))


def test_missing_file_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(json_file.JsonFileError, match="cannot read .*nope.json"):
        json_file.load(str(tmp_path / "nope.json"))


def test_atomic_write_keeps_mode_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "config.json"
    shutil.copy(os.path.join(FIXTURES, "cloudserver", "config.json"), path)
    os.chmod(path, 0o640)
    json_file.write_atomic(str(path), '{"a": 1}\n')
    assert path.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert os.listdir(tmp_path) == ["config.json"]


def test_backup_is_a_timestamped_copy(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}\n")
    copy = json_file.backup(str(path))
    assert re.match(r"config\.json\.%d\.\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d~$" % os.getpid(), os.path.basename(copy))
    assert copy.endswith("~") and open(copy).read() == "{}\n"
