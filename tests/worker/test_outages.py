"""Outages of a whole site: the target refusing every connection holds the site back, and no version's retry
budget is spent on it."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import pytest

from tests.worker.harness import SITE, log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration
OUTAGE_S = 60


class RefusingProxy:
    """A TCP proxy to a local port that can be switched to refuse connections, as a host whose service is down does.

    refuse() closes the listening socket and every connection passed through (connects then fail with
    ECONNREFUSED, requests in flight with a reset); accept_again() listens on the same port again.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = 0
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()
        self.carried: set[socket.socket] = set()
        self.accept_again()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def accept_again(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port, self.listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        with self.lock:
            carried, self.carried = self.carried, set()
        for sock in carried:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refusing now
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.carried.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.carried.difference_update((source, sink))
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxy(sandbox):
    proxy = RefusingProxy(urlparse(sandbox.target.url).port)
    yield proxy
    proxy.refuse()


def put_versions(pair, keys: int, versions: int) -> None:
    for round_ in range(versions):
        for index in range(keys):
            pair.source.put_object(Bucket=pair.source_bucket, Key="k-%03d" % index, Body=b"%d-%d" % (index, round_))


def version_order(listed: list[tuple[str, str]]) -> dict[str, list[str]]:
    """key -> version ids in the order listed (newest first)."""
    order: dict[str, list[str]] = {}
    for key, version_id in listed:
        order.setdefault(key, []).append(version_id)
    return order


def test_a_target_refusing_connections_for_60_s_holds_the_site_and_every_version_completes_in_order(
        pair_factory, proxy):
    pair = pair_factory(site_extra={"endpoint": proxy.url})
    (processor,) = start_pipeline(pair)
    pair.source.put_object(Bucket=pair.source_bucket, Key="before", Body=b"x")
    pair.wait_all_done(90)

    proxy.refuse()
    refused_at = time.monotonic()
    put_versions(pair, keys=50, versions=4)
    # The outage's length is the scenario, not a wait for a condition: the target stays down for OUTAGE_S.
    time.sleep(max(0.0, refused_at + OUTAGE_S - time.monotonic()))
    failed = [(s.entry.key, s.reason) for s in pair.statuses().values() if s.status == "FAILED"]
    assert not failed, "%d versions FAILED during the outage, e.g. %s" % (len(failed), failed[:2])
    assert any(r.get("message") == "site unreachable, holding it" for r in log_records(processor))
    proxy.accept_again()

    statuses = pair.wait_all_done(300)  # every version COMPLETED, none FAILED
    assert len(statuses) == 201
    replicas = target_replicas(pair)
    duplicates = {vid: len(copies) for vid, copies in replicas.items() if len(copies) != 1}
    assert not duplicates
    on_target = version_order([(copies[0]["Key"], vid) for vid, copies in replicas.items()])
    on_source = version_order([(v["Key"], v["VersionId"]) for v in pair.source_versions()])
    assert on_target == on_source


def test_a_processor_joining_during_an_outage_leaves_every_version_completed_once_and_in_order(pair_factory, proxy):
    pair = pair_factory(site_extra={"endpoint": proxy.url})
    (first,) = start_pipeline(pair)
    pair.source.put_object(Bucket=pair.source_bucket, Key="before", Body=b"x")
    pair.wait_all_done(90)

    proxy.refuse()
    put_versions(pair, keys=25, versions=4)
    wait_for(lambda: _logged(first, "site unreachable, holding it"), 60, 0.5, what="the first processor to hold")
    second = pair.workers.start("processor", "--site", SITE, name="processor-joining")
    wait_for(lambda: _partitions(second), 60, 0.5, what="the joining processor to get partitions")
    proxy.accept_again()

    pair.wait_all_done(300)
    replicas = target_replicas(pair)
    duplicates = {vid: len(copies) for vid, copies in replicas.items() if len(copies) != 1}
    assert not duplicates
    on_target = version_order([(copies[0]["Key"], vid) for vid, copies in replicas.items()])
    assert on_target == version_order([(v["Key"], v["VersionId"]) for v in pair.source_versions()])


def _logged(proc, message: str) -> bool:
    return any(r.get("message") == message for r in log_records(proc))


def _partitions(proc) -> list[int]:
    assigned = [r["partitions"] for r in log_records(proc) if r.get("message") == "partitions assigned"]
    return assigned[-1] if assigned else []
