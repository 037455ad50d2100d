"""Fixtures of the worker's tests; the helpers they use are in harness.py."""

from tests.worker.harness import pair, pair_factory  # noqa: F401 - fixtures
