# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""The base of every backbeat.crr module: options, clients, and one way to fail.

Modules declare their own options and constraints; the connection options (when the module talks
to an endpoint) and check mode support come from here, clients are built here, and helpers raise
ModuleFailure instead of exiting, so that run() is the one place a task ends, with one message.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.backbeat.crr.plugins.module_utils import connection
from ansible_collections.backbeat.crr.plugins.module_utils.errors import ModuleFailure

__all__ = ["CrrModule", "ModuleFailure"]


class CrrModule:
    """An AnsibleModule with check mode, the connection options when connects=True, and run()."""

    def __init__(self, argument_spec, connects=True, **constraints):
        spec = connection.connection_argument_spec() if connects else {}
        spec.update(argument_spec)
        self._module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **constraints)
        self._connects = connects

    @property
    def params(self):
        return self._module.params

    @property
    def check_mode(self):
        return self._module.check_mode

    @property
    def diff(self):
        """True under --diff: the result then carries before/after."""
        return self._module._diff

    def warn(self, message):
        """A warning shown with the task's result."""
        self._module.warn(message)

    def client(self, service):
        """A boto3 client of 's3', 'sqs', 'iam' or 'sts' from the connection options."""
        return connection.client(self.params, service)

    def region(self):
        """The region of the connection options (the environment's, the profile's, else us-east-1)."""
        return connection.region(self.params)

    def run(self, apply):
        """Exit with apply(self)'s result dict, or fail once with the ModuleFailure it raised."""
        if self._connects and not connection.HAS_BOTO3:
            self._module.fail_json(msg=connection.missing_boto3_message(), exception=connection.BOTO3_IMPORT_ERROR)
        try:
            result = apply(self)
        except ModuleFailure as failure:
            self._module.fail_json(msg=failure.msg, **failure.result)
        self._module.exit_json(**result)
