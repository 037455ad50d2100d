# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Turn botocore failures into one message naming the call and the entity."""

from __future__ import annotations

try:
    import botocore.exceptions
except ImportError:
    pass  # connection.require_boto3() reports the missing library


def error_code(exc):
    """The service error code of a ClientError ('NoSuchEntity', ...), or None."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


def is_not_found(exc, *codes):
    """True when exc is a ClientError with one of the given 'not found' codes."""
    return isinstance(exc, botocore.exceptions.ClientError) and error_code(exc) in codes


def fail_aws(module, exc, call, entity):
    """Fail the module: '<call> on <entity> failed: <code>: <message>'.

    Credentials never appear: botocore messages carry codes and resource names only.
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        detail = "%s: %s" % (error.get("Code", "Unknown"), error.get("Message", ""))
        hint = _HINTS.get(error.get("Code"), "")
        module.fail_json(
            msg="%s on %s failed: %s%s" % (call, entity, detail.rstrip(": "), hint),
            error_code=error.get("Code"),
        )
    module.fail_json(msg="%s on %s failed: %s" % (call, entity, exc))


_HINTS = {
    "AccessDenied": " (the credentials lack permission for this call)",
    "InvalidAccessKeyId": " (check access_key/secret_key or profile)",
    "SignatureDoesNotMatch": " (check secret_key and region)",
    "LimitExceeded": " (an IAM quota is reached; delete unused entities or versions)",
    "Throttling": " (still throttled after retries; try again later)",
}
