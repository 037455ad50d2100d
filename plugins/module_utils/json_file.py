# Copyright: backbeat.crr contributors
# Apache License 2.0 (see LICENSE)

"""JSON configuration files: read, render stably, back up, and replace atomically keeping owner and mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time


class JsonFileError(ValueError):
    """A configuration file that cannot be read or parsed; the message names the file."""


def load(path):
    """(data, text) of a JSON file; JsonFileError when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise JsonFileError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        return json.loads(text), text
    except ValueError as exc:
        message = "%s is not valid JSON (%s); fix or restore it, it was left untouched" % (path, exc)
        raise JsonFileError(message) from exc


def detect_indent(text, default=4):
    """The indentation width of a JSON text (first indented line), so rewrites keep the file's style."""
    match = re.search(r"^[{\[][^\n]*\n( +)\S", text, re.MULTILINE)
    return len(match.group(1)) if match else default


def render(data, indent=4):
    """Stable text of data: key order kept, same input gives the same bytes, trailing newline."""
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def backup(path, now=None):
    """Copy path to '<path>.<pid>.<YYYY-mm-dd@HH:MM:SS>~' (Ansible's backup naming) and return the copy's path."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S", time.localtime(now))
    destination = "%s.%d.%s~" % (path, os.getpid(), stamp)
    shutil.copy2(path, destination)
    return destination


def write_atomic(path, text):
    """Replace path with text: temp file in the same directory, fsync, same owner and mode, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    current = os.stat(path) if os.path.exists(path) else None
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if current is not None:
            os.chmod(tmp, current.st_mode & 0o7777)
            if (current.st_uid, current.st_gid) != (os.getuid(), os.getgid()):
                os.chown(tmp, current.st_uid, current.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
