"""The connection options as amazon.aws users know them: names, environment fallbacks, precedence, endpoints.

The options are parsed with the validator AnsibleModule itself uses, then handed to connection.region() and
connection.client(); no request is sent (a client's endpoint and settings are read from the client).
"""

from __future__ import annotations

import os

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.backbeat.crr.plugins.module_utils import connection
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure


@pytest.fixture(autouse=True)
def clean_aws_environment(monkeypatch, tmp_path):
    """No AWS_* variable of the test's environment, and empty shared config and credentials files."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, file in (("AWS_CONFIG_FILE", "config"), ("AWS_SHARED_CREDENTIALS_FILE", "credentials")):
        (tmp_path / file).write_text("")
        monkeypatch.setenv(name, str(tmp_path / file))


def parsed(**options):
    """The options as a module receives them (aliases resolved, environment fallbacks applied)."""
    result = ArgumentSpecValidator(connection.connection_argument_spec()).validate(options)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def module(**options):
    """The connection options of a module's task: what connection.client() and region() read."""
    return parsed(**options)


def write_profile(tmp_path, name, region=None):
    """A profile `name` with keys in the shared credentials file and, when given, a region in the config file."""
    (tmp_path / "credentials").write_text("[%s]\naws_access_key_id = pk\naws_secret_access_key = ps\n" % name)
    if region:
        (tmp_path / "config").write_text("[profile %s]\nregion = %s\n" % (name, region))


# ------------------------------------------------------------------------------ names and fallbacks


@pytest.mark.parametrize("alias, option", [
    ("aws_endpoint_url", "endpoint_url"),
    ("s3_url", "endpoint_url"),
    ("aws_region", "region"),
    ("aws_profile", "profile"),
    ("aws_access_key_id", "access_key"),
    ("aws_access_key", "access_key"),
    ("aws_secret_access_key", "secret_key"),
    ("aws_secret_key", "secret_key"),
    ("aws_session_token", "session_token"),
    ("security_token", "session_token"),
])
def test_amazon_aws_aliases_set_the_option(alias, option):
    assert parsed(**{alias: "value"})[option] == "value"


@pytest.mark.parametrize("variable, option", [
    ("AWS_URL", "endpoint_url"),
    ("AWS_REGION", "region"),
    ("AWS_DEFAULT_REGION", "region"),
    ("AWS_PROFILE", "profile"),
    ("AWS_DEFAULT_PROFILE", "profile"),
    ("AWS_ACCESS_KEY_ID", "access_key"),
    ("AWS_ACCESS_KEY", "access_key"),
    ("AWS_SECRET_ACCESS_KEY", "secret_key"),
    ("AWS_SECRET_KEY", "secret_key"),
    ("AWS_SESSION_TOKEN", "session_token"),
])
def test_environment_variable_fills_an_omitted_option(monkeypatch, variable, option):
    monkeypatch.setenv(variable, "from-env")
    assert parsed()[option] == "from-env"


@pytest.mark.parametrize("preferred, other, option", [
    ("AWS_REGION", "AWS_DEFAULT_REGION", "region"),
    ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "profile"),
    ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "access_key"),
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "secret_key"),
])
def test_environment_variables_are_read_in_amazon_aws_order(monkeypatch, preferred, other, option):
    monkeypatch.setenv(preferred, "preferred")
    monkeypatch.setenv(other, "other")
    assert parsed()[option] == "preferred"


def test_an_option_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_URL", "http://env:8000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    options = parsed(endpoint_url="http://option:8000", region="ap-south-1")
    assert (options["endpoint_url"], options["region"]) == ("http://option:8000", "ap-south-1")


def test_ca_bundle_is_an_option_with_the_aws_ca_bundle_fallback(monkeypatch, tmp_path):
    assert parsed(aws_ca_bundle=str(tmp_path / "ca.pem"))["aws_ca_bundle"] == str(tmp_path / "ca.pem")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "env.pem"))
    assert parsed()["aws_ca_bundle"] == str(tmp_path / "env.pem")


# ----------------------------------------------------------------------------------------- region


def test_region_option_comes_first(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert connection.region(module(region="ap-south-1")) == "ap-south-1"


def test_region_from_aws_region_without_the_option(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert connection.region(module()) == "eu-west-1"


def test_region_from_aws_default_region_without_aws_region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert connection.region(module()) == "eu-central-1"


def test_region_of_the_profile_after_the_environment(tmp_path):
    write_profile(tmp_path, "p", region="ap-southeast-2")
    assert connection.region(module(profile="p")) == "ap-southeast-2"


def test_region_is_us_east_1_when_nothing_gives_one():
    assert connection.region(module()) == "us-east-1"


def test_clients_sign_for_the_region_of_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    s3 = connection.client(module(access_key="k", secret_key="s"), "s3")
    assert s3.meta.region_name == "eu-west-1"


# -------------------------------------------------------------------------------------- endpoints


def test_iam_clients_reach_endpoint_url_without_iam_endpoint_url():
    options = module(endpoint_url="http://127.0.0.1:5000", access_key="k", secret_key="s")
    assert connection.client(options, "iam").meta.endpoint_url == "http://127.0.0.1:5000"
    assert connection.client(options, "sts").meta.endpoint_url == "http://127.0.0.1:5000"


def test_iam_endpoint_url_is_preferred_for_iam_and_sts():
    options = module(endpoint_url="http://s3:8000", iam_endpoint_url="http://vault:8600", access_key="k",
                     secret_key="s")
    assert connection.client(options, "iam").meta.endpoint_url == "http://vault:8600"
    assert connection.client(options, "sts").meta.endpoint_url == "http://vault:8600"
    assert connection.client(options, "s3").meta.endpoint_url == "http://s3:8000"
    assert connection.client(options, "sqs").meta.endpoint_url == "http://s3:8000"


def test_endpoint_from_aws_url_is_used_path_style(monkeypatch):
    monkeypatch.setenv("AWS_URL", "http://cloudserver:8000")
    s3 = connection.client(module(access_key="k", secret_key="s"), "s3")
    assert s3.meta.endpoint_url == "http://cloudserver:8000"
    assert s3.meta.config.s3["addressing_style"] == "path"


def test_endpoint_from_botocore_aws_endpoint_url_is_used_path_style(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://cloudserver:8000")
    s3 = connection.client(module(access_key="k", secret_key="s"), "s3")
    assert s3.meta.endpoint_url == "http://cloudserver:8000"
    assert s3.meta.config.s3["addressing_style"] == "path"


def test_aws_s3_keeps_virtual_host_addressing():
    s3 = connection.client(module(access_key="k", secret_key="s", region="eu-west-1"), "s3")
    assert s3.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert (s3.meta.config.s3 or {}).get("addressing_style") != "path"


# ------------------------------------------------------------------------------------ credentials


def test_unknown_profile_fails_naming_the_option():
    with pytest.raises(ModuleFailure) as failed:
        connection.client(module(profile="nosuch"), "s3")
    msg = failed.value.msg
    assert msg.startswith("profile: the config profile (nosuch) could not be found")
    assert "AWS_PROFILE" in msg and "access_key" in msg


def test_unknown_profile_fails_the_same_when_only_the_region_is_asked():
    with pytest.raises(ModuleFailure) as failed:
        connection.region(module(profile="nosuch"))
    assert failed.value.msg.startswith("profile: the config profile (nosuch) could not be found")


def test_profile_from_the_environment_gives_its_keys(monkeypatch, tmp_path):
    write_profile(tmp_path, "p")
    monkeypatch.setenv("AWS_PROFILE", "p")
    credentials = connection.client(module(), "s3")._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("pk", "ps")


def test_profile_and_keys_together_fail_naming_both(monkeypatch, tmp_path):
    write_profile(tmp_path, "p")
    monkeypatch.setenv("AWS_PROFILE", "p")
    with pytest.raises(ModuleFailure) as failed:
        connection.client(module(access_key="k", secret_key="s"), "s3")
    assert failed.value.msg.startswith("profile: cannot be used together with access_key")


def test_an_empty_key_option_does_not_count_against_a_profile(monkeypatch, tmp_path):
    """amazon.aws' way out when keys are in the environment but a task names a profile."""
    write_profile(tmp_path, "p")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    s3 = connection.client(module(profile="p", access_key="", secret_key=""), "s3")
    assert s3._request_signer._credentials.access_key == "pk"


def test_access_key_without_secret_key_fails_naming_both():
    with pytest.raises(ModuleFailure) as failed:
        connection.client(module(access_key="k"), "s3")
    assert failed.value.msg.startswith("access_key, secret_key: give both")


# ---------------------------------------------------------------------------------------------- TLS


def test_ca_bundle_verifies_the_endpoints(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    s3 = connection.client(module(access_key="k", secret_key="s", aws_ca_bundle=str(bundle)), "s3")
    assert s3._endpoint.http_session._verify == str(bundle)


def test_validate_certs_false_wins_over_a_ca_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    s3 = connection.client(module(access_key="k", secret_key="s", validate_certs=False), "s3")
    assert s3._endpoint.http_session._verify is False


def test_missing_ca_bundle_fails_naming_the_option(tmp_path):
    with pytest.raises(ModuleFailure) as failed:
        connection.client(module(access_key="k", secret_key="s", aws_ca_bundle=str(tmp_path / "none.pem")), "s3")
    assert failed.value.msg.startswith("aws_ca_bundle: no file at %s" % (tmp_path / "none.pem"))
