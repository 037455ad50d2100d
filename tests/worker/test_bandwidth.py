"""A site's `bandwidthLimit`: the token bucket on a fake clock, the config key, and real copies through moto that
cannot go faster than the limit (only lower bounds are asserted: a busy machine makes copies slower, never
faster)."""

from __future__ import annotations

import threading
import time

import pytest
from crr_worker.config import ConfigError, parse_config
from crr_worker.retry import Stopped
from crr_worker.sources.s3 import S3Source
from crr_worker.targets.aws_s3 import AwsS3Target
from crr_worker.targets.bandwidth import TokenBucket

from tests.worker.harness import SITE
from tests.worker.test_config import SITES, with_change
from tests.worker.test_target import entry_for

KIB = 1024
LIMIT = 256 * KIB


class FakeClock:
    """A clock that moves only when the bucket sleeps; `slept` records each sleep."""

    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_full_bucket_lets_a_burst_go_at_once_then_waits_for_each_byte_beyond_it():
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=1000, clock=clock, sleep=clock.sleep)

    bucket.take(1000)
    assert clock.slept == []
    bucket.take(2500)
    assert sum(clock.slept) == pytest.approx(2.5)
    assert max(clock.slept) <= 0.1 + 1e-9  # in slices, each one checking the stop signal


def test_an_idle_bucket_refills_at_the_rate_up_to_its_burst_only():
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=1000, clock=clock, sleep=clock.sleep)
    bucket.take(1000)

    clock.now += 60  # idle a minute: the bucket holds one burst, not 60 000 bytes
    bucket.take(3000)

    assert sum(clock.slept) == pytest.approx(2.0)


def test_takes_from_several_copies_share_one_rate():
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=0, clock=clock, sleep=clock.sleep)

    bucket.take(1000)  # a first copy's chunk: 1 s of debt
    first_done = clock.now
    bucket.take(1000)  # a second copy's chunk waits behind it

    assert first_done - 100.0 == pytest.approx(1.0)
    assert clock.now - 100.0 == pytest.approx(2.0)


def test_a_throttled_take_stops_when_its_stop_signal_is_set():
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=0, clock=clock, sleep=clock.sleep)
    stop = threading.Event()
    stop.set()

    with pytest.raises(Stopped):
        bucket.take(5000, stop)


@pytest.mark.parametrize("given, limit", [(262144, 262144), ("50MiB", 50 * 1024 * 1024), ("800KB", 800_000),
                                          ("1.5 GiB", int(1.5 * 1024 ** 3)), ("4096", 4096)])
def test_bandwidth_limit_takes_bytes_per_second_with_an_optional_unit(given, limit):
    config = parse_config(with_change(SITES + ".0.bandwidthLimit", given))
    assert config.site("aws1").bandwidth_limit == limit
    assert config.site("zenko").bandwidth_limit is None


@pytest.mark.parametrize("given", [0, -5, "0MiB", "fast", "10XB", "MiB", 1.5, True])
def test_an_invalid_bandwidth_limit_is_refused_naming_the_key_and_the_form(given):
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(SITES + ".0.bandwidthLimit", given))
    message = str(error.value)
    assert SITES + "[0].bandwidthLimit" in message
    assert "bytes per second" in message or "must be" in message


@pytest.fixture
def limited(pair):
    """The pair's source, and its aws_s3 target limited to LIMIT bytes/s."""
    site = dict(pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0], bandwidthLimit="256KiB")
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [site]})
    config = pair.load()
    target = AwsS3Target(config.site(SITE), config.queue_processor)
    yield S3Source(config.source, SITE), target
    target.close()


@pytest.mark.integration
def test_a_copy_to_a_limited_site_takes_at_least_its_size_over_the_limit_less_one_burst(pair, limited):
    """1 MiB at 256 KiB/s: at least (1 MiB - one second's burst) / 256 KiB/s = 3 s."""
    source, target = limited
    body = b"b" * (1024 * KIB)
    entry = entry_for(pair, "big", pair.source.put_object(Bucket=pair.source_bucket, Key="big", Body=body), len(body))

    started = time.monotonic()
    written = target.replicate(entry, source, threading.Event())
    elapsed = time.monotonic() - started

    assert written.bytes_copied == len(body)
    assert elapsed >= (len(body) - LIMIT) / LIMIT
    assert pair.target.get_object(Bucket=pair.target_bucket, Key="big")["Body"].read() == body


@pytest.mark.integration
def test_concurrent_copies_to_a_limited_site_share_its_limit(pair, limited):
    """Two 512 KiB copies at once: together at least (1 MiB - one burst) / 256 KiB/s = 3 s, where each alone
    would need only 1 s beyond its burst."""
    source, target = limited
    body = b"c" * (512 * KIB)
    entries = [entry_for(pair, key, pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=body), len(body))
               for key in ("one", "two")]
    written = []

    started = time.monotonic()
    threads = [threading.Thread(target=lambda e=e: written.append(target.replicate(e, source, threading.Event())))
               for e in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started

    assert sorted(w.bytes_copied for w in written) == [len(body), len(body)]
    assert elapsed >= (2 * len(body) - LIMIT) / LIMIT
