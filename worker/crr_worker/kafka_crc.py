"""kafka-python's record CRC-32C computed in C, by google-crc32c (Apache-2.0).

kafka-python computes the CRC-32C of every record batch it produces and checks it on every batch it fetches. Unless
the LGPL `crc32c` package is importable it does so in pure Python: about 200 µs per KiB here, the largest single
cost of the worker's Kafka traffic. google-crc32c's C extension takes about 0.13 µs per KiB (docs/performance.md).
kafka-python has no setting for it, so the one function its record batches call is replaced, once, when
crr_worker.kafka_io is imported.
"""

from __future__ import annotations

from kafka.record import default_records, util

try:
    import google_crc32c
except ImportError:  # an install without it: kafka-python's own CRC, slower, same records
    google_crc32c = None


def use_c_crc32c() -> str:
    """Point kafka-python's record batches at a C CRC-32C where one is there; return the implementation in use."""
    if util.crc32c_c is not None:
        return "crc32c"  # kafka-python found the `crc32c` package itself
    if google_crc32c is None or google_crc32c.implementation != "c":
        return "python"  # google-crc32c's own fallback is pure Python too: nothing gained
    default_records.calc_crc32c = google_crc32c_of
    return "google-crc32c"


def google_crc32c_of(view: memoryview) -> int:
    """The CRC-32C of a record batch's bytes (google-crc32c takes bytes, not a memoryview: the copy costs less)."""
    return google_crc32c.value(bytes(view))
