# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Parse and recognise ARNs (AWS and Scality Vault use the same shape)."""

from __future__ import annotations

import re

_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):(?P<service>[\w-]+):(?P<region>[\w-]*):(?P<account_id>\d{12}|\*|):(?P<resource>.+)$"
)


def parse_arn(arn):
    """Dict of partition, service, region, account_id, resource; None when arn is not an ARN."""
    if not isinstance(arn, str):
        return None
    match = _ARN.match(arn)
    return match.groupdict() if match else None


def is_role_arn(arn):
    """True for 'arn:<partition>:iam::<account>:role/<path/>name'."""
    parts = parse_arn(arn)
    return bool(parts and parts["service"] == "iam" and parts["account_id"] and parts["resource"].startswith("role/"))
