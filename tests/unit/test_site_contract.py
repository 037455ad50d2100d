"""The worker reads the sites exactly as crr_endpoint (and the playbook's filter) writes them."""

from __future__ import annotations

import pytest
from ansible_collections.backbeat.crr.plugins.filter.worker_bootstrap_list import worker_bootstrap_list
from crr_worker.config import ConfigError, parse_config


def _worker_config(sites):
    return parse_config({
        "kafka": {"hosts": "127.0.0.1:9092"},
        "extensions": {"replication": {
            "source": {"endpoint": "http://127.0.0.1:8000", "buckets": ["source-bucket"]},
            "destination": {"bootstrapList": worker_bootstrap_list(sites)},
        }},
    })


def test_aws_site_written_by_crr_endpoint_is_the_worker_target():
    config = _worker_config([{"name": "awsbackend", "type": "aws_s3", "aws_endpoint": "127.0.0.1:9000",
                              "https": False, "bucket": "replicas", "region": "eu-west-1",
                              "credentials_profile": "aws_backend"}])
    site = config.site("awsbackend")
    assert site.type == "aws_s3"
    assert site.endpoint == "http://127.0.0.1:9000"
    assert site.bucket == "replicas"
    assert site.region == "eu-west-1"
    assert site.credentials.profile == "aws_backend" and site.credentials.file is None


def test_aws_site_defaults_to_https():
    config = _worker_config([{"name": "aws", "type": "aws_s3", "aws_endpoint": "s3.amazonaws.com",
                              "bucket": "b", "credentials_profile": "p"}])
    assert config.site("aws").endpoint == "https://s3.amazonaws.com"


def test_scality_site_keeps_its_servers_and_names_the_target_account_and_its_keys():
    config = _worker_config([{"name": "zenko", "type": "scality", "servers": ["node2:8000"],
                              "canonical_id": "79a59df9", "display_name": "Bart", "credentials_profile": "zenko"}])
    site = config.site("zenko")
    assert site.servers == ("node2:8000",) and (site.canonical_id, site.display_name) == ("79a59df9", "Bart")
    assert site.credentials.profile == "zenko" and not site.https


def test_a_scality_site_written_with_https_is_reached_over_https_by_the_worker():
    config = _worker_config([{"name": "zenko", "type": "scality", "servers": ["node2:8443"], "https": True,
                              "canonical_id": "79a59df9", "display_name": "Bart", "credentials_profile": "zenko"}])
    assert config.site("zenko").https


def test_a_site_written_with_replicate_version_deletes_deletes_versions_in_the_worker():
    config = _worker_config([{"name": "aws", "type": "aws_s3", "aws_endpoint": "s3.amazonaws.com", "bucket": "b",
                              "credentials_profile": "p", "replicate_version_deletes": True},
                             {"name": "other", "type": "aws_s3", "aws_endpoint": "s3.amazonaws.com", "bucket": "c",
                              "credentials_profile": "p"}])
    assert config.site("aws").replicate_version_deletes and not config.site("other").replicate_version_deletes


def test_a_scality_site_without_its_target_account_is_refused_before_any_change():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=r"sites\[0\] \(zenko\): a scality site needs canonical_id"):
        worker_bootstrap_list([{"name": "zenko", "type": "scality", "servers": ["node2:8000"]}])


def test_inline_keys_are_refused_naming_the_key():
    sites = [{"name": "aws", "type": "aws_s3", "aws_endpoint": "s3.amazonaws.com", "bucket": "b",
              "access_key": "AKIA", "secret_key": "secret"}]
    with pytest.raises(ConfigError, match=r"bootstrapList\[0\]\.credentials: .*credentialsProfile"):
        _worker_config(sites)


def test_profile_without_file_reads_the_services_credentials_file(tmp_path, monkeypatch):
    from crr_worker.aws import load_keys
    from crr_worker.config import Credentials

    path = tmp_path / "credentials"
    path.write_text("[aws_backend]\naws_access_key_id = AK\naws_secret_access_key = SK\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    keys = load_keys(Credentials(profile="aws_backend"), "bootstrapList[0].credentials")
    assert keys == {"aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
    with pytest.raises(ConfigError, match="profile 'missing' not in"):
        load_keys(Credentials(profile="missing"), "bootstrapList[0].credentials")
