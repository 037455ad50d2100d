# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every backbeat.crr module."""

    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of the S3 endpoint, for example C(http://cloudserver:8000) for Scality S3.
      - Omit for AWS S3. Path-style addressing is used whenever it is set.
      - For M(backbeat.crr.crr_role) and M(backbeat.crr.crr_policy) this is the IAM (and STS) endpoint when
        O(iam_endpoint_url) is not set, as in amazon.aws' IAM modules.
    type: str
    aliases: [s3_url]
  iam_endpoint_url:
    description:
      - URL of the IAM endpoint, for example C(http://vault:8600) for Scality Vault.
      - Omit for AWS IAM. STS calls use the same endpoint.
      - Preferred to O(endpoint_url) by the IAM modules, so that one set of options (for example
        C(module_defaults) for the C(group/backbeat.crr.s3) action group) can name both the S3 and the IAM endpoint.
    type: str
  region:
    description:
      - Region the clients sign requests for, and where new buckets are created.
    type: str
    default: us-east-1
  profile:
    description:
      - Named profile of the AWS shared credentials file.
      - Mutually exclusive with O(access_key) and O(secret_key).
    type: str
  access_key:
    description:
      - Access key id. Falls back to the usual AWS environment variables and files when omitted.
    type: str
  secret_key:
    description:
      - Secret access key, paired with O(access_key). Never logged.
    type: str
  session_token:
    description:
      - Session token for temporary credentials. Never logged.
    type: str
  validate_certs:
    description:
      - Whether TLS certificates of the endpoints are verified.
    type: bool
    default: true
requirements:
  - python >= 3.9
  - boto3
  - botocore
"""
