"""Unit tests import the collection as ansible_collections.backbeat.crr (a symlink to this checkout)."""

from __future__ import annotations

import sys
import tempfile

from playbook import collections_path

sys.path.insert(0, collections_path(tempfile.mkdtemp(prefix="crr-unit-collections-")))
