# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every backbeat.crr module: amazon.aws' names, aliases and variables."""

    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of the S3 endpoint, for example C(http://cloudserver:8000) for Scality S3.
      - Omit for AWS S3. Path-style addressing is used whenever it is set, and for an endpoint that botocore reads
        from C(AWS_ENDPOINT_URL) or C(AWS_ENDPOINT_URL_S3) when it is not AWS.
      - For M(backbeat.crr.crr_role) and M(backbeat.crr.crr_policy) this is the IAM (and STS) endpoint when
        O(iam_endpoint_url) is not set, as in amazon.aws' IAM modules.
      - The C(AWS_URL) environment variable may also be used. Without either, botocore's own
        C(AWS_ENDPOINT_URL_<SERVICE>) and C(AWS_ENDPOINT_URL) variables and the profile's C(endpoint_url) apply.
    type: str
    aliases: [aws_endpoint_url, s3_url]
  iam_endpoint_url:
    description:
      - URL of the IAM endpoint, for example C(http://vault:8600) for Scality Vault.
      - Omit for AWS IAM. STS calls use the same endpoint.
      - Preferred to O(endpoint_url) by the IAM modules, so that one set of options (for example
        C(module_defaults) for the C(group/backbeat.crr.s3) action group) can name both the S3 and the IAM endpoint.
    type: str
  region:
    description:
      - Region the clients sign requests for, and where new buckets and queues are created.
      - When omitted, the C(AWS_REGION) or C(AWS_DEFAULT_REGION) environment variable, in this order of
        preference, then the region of the profile, then C(us-east-1).
    type: str
    aliases: [aws_region]
  profile:
    description:
      - Named profile of the AWS shared credentials and config files.
      - The C(AWS_PROFILE) or C(AWS_DEFAULT_PROFILE) environment variables may also be used, in this order of
        preference.
      - Cannot be used together with O(access_key), O(secret_key) or O(session_token), whether given as options or
        by environment variables; set the one to leave out to an empty string.
    type: str
    aliases: [aws_profile]
  access_key:
    description:
      - Access key id, given together with O(secret_key).
      - The C(AWS_ACCESS_KEY_ID) or C(AWS_ACCESS_KEY) environment variables may also be used, in this order of
        preference. Without keys or a profile, boto3 looks for credentials in its usual places.
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - Secret access key, paired with O(access_key). Never logged.
      - The C(AWS_SECRET_ACCESS_KEY) or C(AWS_SECRET_KEY) environment variables may also be used, in this order
        of preference.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - Session token for temporary credentials. Never logged.
      - The C(AWS_SESSION_TOKEN) environment variable may also be used.
    type: str
    aliases: [aws_session_token, security_token]
  validate_certs:
    description:
      - Whether TLS certificates of the endpoints are verified.
      - Rather than turning it off for a self-signed endpoint, give its CA in O(aws_ca_bundle).
    type: bool
    default: true
  aws_ca_bundle:
    description:
      - PEM file of the CAs the endpoints' TLS certificates are verified with, instead of the default ones; for
        example the CA of a self-signed Scality CloudServer or Vault endpoint.
      - The C(AWS_CA_BUNDLE) environment variable may also be used.
      - Not used when O(validate_certs=false).
    type: path
notes:
  - Environment variables and the AWS shared files are read on the host the module runs on, as by amazon.aws'
    modules.
requirements:
  - python >= 3.9
  - boto3
  - botocore
"""
