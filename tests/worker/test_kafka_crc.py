"""kafka-python's record batches checksummed by google-crc32c's C code (crr_worker.kafka_crc).

The round trip through a real broker is every other Kafka test: a wrong CRC fails each fetch (check_crcs). Here, the
part a broker cannot show: the replacement is the one in use, and it agrees with kafka-python's own on the CRC
of each batch it builds and on each corruption it must catch.
"""

import os

from crr_worker import kafka_crc, kafka_io
from kafka.record import _crc32c, default_records
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder


def test_the_worker_uses_google_crc32c_in_c():
    assert kafka_io.CRC32C == "google-crc32c"
    assert default_records.calc_crc32c is kafka_crc.google_crc32c_of


def test_it_agrees_with_kafka_pythons_pure_python_crc():
    for size in (0, 1, 7, 61, 600, 4096, 65_537):
        data = os.urandom(size)
        assert kafka_crc.google_crc32c_of(memoryview(data)) == _crc32c.crc(data), size


def test_a_built_batch_validates_and_a_flipped_byte_does_not():
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20)
    for i in range(50):
        builder.append(i, timestamp=None, key=b"key-%d" % i, value=os.urandom(300), headers=[])
    buffer = bytearray(builder.build())
    assert DefaultRecordBatch(bytes(buffer)).validate_crc()
    assert DefaultRecordBatch(bytes(buffer)).crc == _crc32c.crc(bytes(buffer[DefaultRecordBatch.ATTRIBUTES_OFFSET:]))
    buffer[-10] ^= 0x01
    assert not DefaultRecordBatch(bytes(buffer)).validate_crc()
