# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""How a module fails: ModuleFailure, and botocore failures as one message naming the call and the entity.

Service errors (ClientError) and endpoint problems (BotoCoreError: connection refused or
closed, timeouts) both raise ModuleFailure with that message; CrrModule.run() (modules.py) ends
the task with it instead of a traceback.
"""

from __future__ import annotations

try:
    import botocore
    import botocore.exceptions

    AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
except ImportError:
    AWS_ERRORS = ()  # connection reports the missing library


class ModuleFailure(Exception):
    """The task fails with msg (naming the option or the call, and the fix) and extra result keys."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


# The codes S3 servers answer for a bucket that does not exist (HEAD requests carry only the status).
BUCKET_NOT_FOUND = ("404", "NoSuchBucket", "NotFound")


def error_code(exc):
    """The service error code of a ClientError ('NoSuchEntity', ...), or None."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code")


def is_not_found(exc, *codes):
    """True when exc is a ClientError with one of the given 'not found' codes."""
    return isinstance(exc, botocore.exceptions.ClientError) and error_code(exc) in codes


def call(client, name, entity, *, none_for=(), **kwargs):
    """client.<name>(**kwargs) for any boto3 client; on failure raises ModuleFailure naming name and entity.

    name is the boto3 method (get_role) or the API operation (HeadBucket), and the message says it
    as given. A ClientError whose code is in none_for is an answer, not a failure: the call returns
    None, which a success never does (boto3 answers every call with a dict).
    """
    try:
        return getattr(client, botocore.xform_name(name))(**kwargs)
    except AWS_ERRORS as exc:
        if is_not_found(exc, *none_for):
            return None
        raise aws_failure(exc, name, entity) from None


def aws_failure(exc, call, entity):
    """The ModuleFailure of a botocore failure: '<call> on <entity> failed: <code>: <message>'.

    Credentials never appear: botocore messages carry codes and resource names only.
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        detail = "%s: %s" % (error.get("Code", "Unknown"), error.get("Message", ""))
        hint = _HINTS.get(error.get("Code"), "")
        return ModuleFailure("%s on %s failed: %s%s" % (call, entity, detail.rstrip(": "), hint),
                             error_code=error.get("Code"))
    return ModuleFailure("%s on %s failed: %s" % (call, entity, exc))


_HINTS = {
    "AccessDenied": " (the credentials lack permission for this call)",
    "InvalidAccessKeyId": " (check access_key/secret_key or profile)",
    "SignatureDoesNotMatch": " (check secret_key and region)",
    "LimitExceeded": " (an IAM quota is reached; delete unused entities or versions)",
    "Throttling": " (still throttled after retries; try again later)",
}
