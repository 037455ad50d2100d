# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Connection options and boto3 clients shared by the backbeat.crr modules.

The same options reach AWS, Scality CloudServer/Vault and moto: only the endpoint
URLs differ, so every module builds its clients here and nowhere else.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

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


def connection_argument_spec():
    """Argument spec of the connection options documented in doc_fragments/connection.py."""
    return dict(
        endpoint_url=dict(type="str", aliases=["s3_url"]),
        iam_endpoint_url=dict(type="str"),
        region=dict(type="str", default="us-east-1"),
        profile=dict(type="str"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        session_token=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
    )


CONNECTION_MUTUALLY_EXCLUSIVE = [["profile", "access_key"], ["profile", "secret_key"]]
CONNECTION_REQUIRED_TOGETHER = [["access_key", "secret_key"]]


def require_boto3(module):
    """Fail with the install hint when boto3 is missing on the managed host."""
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)


def client(module, service):
    """A boto3 client for 's3', 'sqs', 'iam' or 'sts' built from the module's connection options.

    SQS is reached on endpoint_url, beside S3 (as moto and S3-compatible stacks serving both do);
    IAM and STS on iam_endpoint_url, else on endpoint_url: the IAM modules (crr_role, crr_policy)
    take endpoint_url as their endpoint, as amazon.aws' IAM modules do, so that it never sends
    them to AWS while naming another server.
    """
    require_boto3(module)
    params = module.params
    session = boto3.session.Session(
        profile_name=params.get("profile"),
        aws_access_key_id=params.get("access_key"),
        aws_secret_access_key=params.get("secret_key"),
        aws_session_token=params.get("session_token"),
        region_name=params.get("region"),
    )
    endpoint = params.get("endpoint_url")
    if service in ("iam", "sts"):
        endpoint = params.get("iam_endpoint_url") or endpoint
    config = {"retries": _RETRIES}
    if service == "s3" and endpoint:
        config["s3"] = {"addressing_style": "path"}
    try:
        return session.client(
            service,
            endpoint_url=endpoint or None,
            verify=params.get("validate_certs", True),
            config=botocore.config.Config(**config),
        )
    except (botocore.exceptions.ProfileNotFound, botocore.exceptions.NoRegionError) as exc:
        module.fail_json(msg="Cannot build the %s client: %s (check the 'profile' and 'region' options)"
                         % (service, exc))
