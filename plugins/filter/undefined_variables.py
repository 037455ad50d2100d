# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""Filter undefined_variables: where a variable's value uses variables that are not defined.

Ansible templates a value only when a task reads it, so an undefined vault_* secret inside
worker_credentials would surface in the worker play, after the IAM and bucket plays changed
things. The playbook's first play runs this on every variable the run reads, to fail before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")


def _entry(path, error):
    """{'path', 'variable'}: the variable is the undefined name the error names, else the error text."""
    found = _UNDEFINED_NAME.search(str(error))
    return {"path": path, "variable": found.group(1) if found else str(error)}


def _children(value, path):
    """(path, read) of each item of a dict or list; read() templates the item (and may raise)."""
    if isinstance(value, Mapping):
        return [("%s.%s" % (path, key), lambda key=key: value[key]) for key in value.keys()]
    if isinstance(value, (list, tuple)):
        return [("%s[%d]" % (path, index), lambda index=index: value[index]) for index in range(len(value))]
    return []


def _walk(value, path):
    found = []
    for child_path, read in _children(value, path):
        try:
            child = read()
        except Exception as error:  # an undefined variable surfaces as whichever error the core version raises
            found.append(_entry(child_path, error))
            continue
        found += _walk(child, child_path)
    return found


def undefined_variables(variables, names):
    """The undefined variables used by the variables whose name fully matches the regex names.

    [{'path', 'variable', 'host'}], host being the input's inventory_hostname (None without one).
    """
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError("undefined_variables: expects the variables of a host (e.g. hostvars[host])")
    try:
        wanted = re.compile(names)
    except (TypeError, re.error) as error:
        raise AnsibleFilterError("undefined_variables: names must be a regular expression: %s" % error) from None
    found = []
    for name in sorted(key for key in variables.keys() if wanted.fullmatch(str(key))):
        try:
            value = variables[name]
        except Exception as error:
            found.append(_entry(name, error))
            continue
        found += _walk(value, name)
    host = variables.get("inventory_hostname")
    return [dict(entry, host=host) for entry in found]


class FilterModule:
    def filters(self):
        return {"undefined_variables": undefined_variables}
