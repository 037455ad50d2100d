# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Connection options and boto3 clients shared by the backbeat.crr modules.

The same options reach AWS, Scality CloudServer/Vault and moto: only the endpoint URLs differ, so every
module builds its clients here and nowhere else. The options, their aliases and their environment
variables are amazon.aws' (its module_utils/modules.py and doc fragments common.py, region.py), read in
the same order, so that tasks and shells set up for amazon.aws work unchanged.
"""

from __future__ import annotations

import os
import traceback
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

# botocore's "standard" retry mode retries throttling, 5xx and connection errors
# with jittered exponential backoff: no home-made retry loop is needed.
_RETRIES = {"mode": "standard", "max_attempts": 6}

# Where neither the options, the environment nor the profile name a region (s3_bucket's default too).
DEFAULT_REGION = "us-east-1"

# Hosts of AWS endpoints, which take virtual-host addressing; any other S3 endpoint gets path-style.
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def connection_argument_spec():
    """Argument spec of the connection options documented in doc_fragments/connection.py."""
    return dict(
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url", "s3_url"], fallback=(env_fallback, ["AWS_URL"])),
        iam_endpoint_url=dict(type="str"),
        region=dict(type="str", aliases=["aws_region"],
                    fallback=(env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])),
        profile=dict(type="str", aliases=["aws_profile"],
                     fallback=(env_fallback, ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"])),
        access_key=dict(type="str", aliases=["aws_access_key_id", "aws_access_key"], no_log=True,
                        fallback=(env_fallback, ["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"])),
        secret_key=dict(type="str", aliases=["aws_secret_access_key", "aws_secret_key"], no_log=True,
                        fallback=(env_fallback, ["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"])),
        session_token=dict(type="str", aliases=["aws_session_token", "security_token"], no_log=True,
                           fallback=(env_fallback, ["AWS_SESSION_TOKEN"])),
        validate_certs=dict(type="bool", default=True),
        aws_ca_bundle=dict(type="path", fallback=(env_fallback, ["AWS_CA_BUNDLE"])),
    )


def missing_boto3_message():
    """The install hint for boto3 missing on the managed host."""
    return missing_required_lib("boto3")


def _credentials(params):
    """(profile, access_key, secret_key, session_token), empty ones None; fails on a contradiction.

    Checked here rather than in the argument spec, whose checks would count an option filled from the
    environment as given, and an empty one too: an empty option is amazon.aws' way to set a variable
    of the environment aside.
    """
    profile = params.get("profile") or None
    keys = [params.get(name) or None for name in ("access_key", "secret_key", "session_token")]
    if profile and any(keys):
        given = [name for name, value in zip(("access_key", "secret_key", "session_token"), keys) if value]
        raise ModuleFailure("profile: cannot be used together with %s; give either the profile or the keys, "
                            "from the options or the environment (AWS_PROFILE; AWS_ACCESS_KEY_ID, "
                            "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), or set the one to leave out to ''"
                            % ", ".join(given))
    if bool(keys[0]) != bool(keys[1]):
        raise ModuleFailure("access_key, secret_key: give both (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), "
                            "or neither")
    return [profile] + keys


def _session(params):
    """The boto3 Session of the options' profile or keys, its region set when the options give one."""
    if not HAS_BOTO3:
        raise ModuleFailure(missing_boto3_message(), exception=BOTO3_IMPORT_ERROR)
    profile, access_key, secret_key, session_token = _credentials(params)
    try:
        return boto3.session.Session(
            profile_name=profile,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            region_name=params.get("region") or None,
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise _profile_failure(exc) from None


def _profile_failure(exc):
    """The failure naming the option for botocore's ProfileNotFound (raised wherever botocore first reads it)."""
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    return ModuleFailure("profile: the config profile (%s) could not be found in %s or %s; fix the profile option "
                         "(or AWS_PROFILE), add the profile to those files, or give access_key and secret_key instead"
                         % ((exc.kwargs.get("profile"),) + files))


def region(params):
    """The region clients sign for and buckets and queues are made in.

    The option (or AWS_REGION, then AWS_DEFAULT_REGION, its fallbacks), else the profile's, else us-east-1.
    """
    if params.get("region"):
        return params["region"]
    try:
        return _session(params).region_name or DEFAULT_REGION
    except botocore.exceptions.ProfileNotFound as exc:
        raise _profile_failure(exc) from None


def _verify(params):
    """botocore's verify: False, or the CA bundle to verify with, or True for the default CAs."""
    if not params.get("validate_certs", True):
        return False
    bundle = params.get("aws_ca_bundle")
    if not bundle:
        return True
    if not os.path.isfile(bundle):
        raise ModuleFailure("aws_ca_bundle: no file at %s (the option, or AWS_CA_BUNDLE); give the PEM file of "
                            "the CAs that sign the endpoints' certificates" % bundle)
    return bundle


def _is_aws(url):
    host = urlsplit(url or "").hostname or ""
    return host.endswith(_AWS_HOST_SUFFIXES)


def client(params, service):
    """A boto3 client for 's3', 'sqs', 'iam' or 'sts' built from the connection options params.

    SQS is reached on endpoint_url, beside S3 (as moto and S3-compatible stacks serving both do);
    IAM and STS on iam_endpoint_url, else on endpoint_url: the IAM modules (crr_role, crr_policy)
    take endpoint_url as their endpoint, as amazon.aws' IAM modules do, so that it never sends
    them to AWS while naming another server. Without either, botocore's own endpoint settings
    (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, the profile's endpoint_url) apply, then AWS.
    """
    session = _session(params)
    endpoint = params.get("endpoint_url")
    if service in ("iam", "sts"):
        endpoint = params.get("iam_endpoint_url") or endpoint
    settings = dict(region_name=region(params), endpoint_url=endpoint or None, verify=_verify(params))
    try:
        made = session.client(service, config=_config(service, path_style=bool(endpoint)), **settings)
        if service == "s3" and not endpoint and not _is_aws(made.meta.endpoint_url):
            # An endpoint configured for botocore (AWS_ENDPOINT_URL...) is no more AWS than the option's.
            made = session.client(service, config=_config(service, path_style=True), **settings)
        return made
    except botocore.exceptions.ProfileNotFound as exc:
        raise _profile_failure(exc) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ModuleFailure("Cannot build the %s client: %s" % (service, exc)) from None


def _config(service, path_style):
    config = {"retries": _RETRIES}
    if service == "s3" and path_style:
        config["s3"] = {"addressing_style": "path"}
    return botocore.config.Config(**config)
