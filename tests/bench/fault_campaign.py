"""A seeded fault campaign: versions written while the pipeline's parts are killed, frozen and cut, then both sides
compared. Not a test: it measures and prints a JSON summary, and exits 1 when the end state is wrong.

On a sandbox of its own (Kafka + two moto servers, the source read through StoredReplicationProxy, the target
behind a RefusingProxy), with the worker's components as `crr-worker` processes, a seeded RNG decides:
  versions  small and empty objects, a few multipart (>= mpuThreshold, set to 5 MiB), odd keys (unicode, spaces,
            `%`, `+`), keys with up to 3 versions, delete markers; paced over the fault window
  faults    kill -9 (and restart) of the processor, the populator, the status processor; kill -9 of the Kafka
            broker and restart on the same port and data dir; the target frozen 30 s (SIGSTOP/SIGCONT of its
            moto); the target refusing connections 30 s; a second processor joining, then leaving
A component that exits on its own is restarted, as systemd would (Restart=always), and counted.
Then it waits until no version is PENDING and no replay waits, and checks (campaign_checks.py): 0 lost, 0
duplicated, 0 out of order, latest equal on both sides, 0 FAILED, 0 PENDING; `crr-worker verify` is a second
opinion. Evidence (config, worker logs, summary.json) stays in the work directory printed at the start.

Usage: .venv/bin/python tests/bench/fault_campaign.py --seed N [--versions 1000] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # test_crr_bucket_replication (StoredReplicationProxy) imports `playbook`

from sandbox import lifecycle  # noqa: E402
from sandbox.processes import SandboxError, port_open, spawn, wait_until  # noqa: E402
from tests.bench.campaign_checks import (  # noqa: E402
    CHECKS,
    check_ledger,
    check_multipart_bodies,
    compare,
    list_versions,
    target_versions,
)
from tests.worker.harness import SITE, client, log_records, make_pair  # noqa: E402
from tests.worker.test_outages import RefusingProxy  # noqa: E402

MIB = 1024 * 1024
MPU_THRESHOLD = 5 * MIB  # the smallest the worker accepts; moto is slow with big objects, so they are few
SCAN_INTERVAL_S = 20  # moto sends no notification for delete markers: the scan finds them
OUTAGE_S = 30
ODD_KEYS = ("ünïcödé/ключ-%d", "with space/and more %d.txt", "percent%%25/100%% sure-%d", "plus+sign/a+b=%d",
            "mixed %%2B+ü %d")
FULL_FAULTS = ("kill-processor", "kill-populator", "kill-status-processor", "kill-kafka", "freeze-target",
               "refuse-target", "second-processor")
QUICK_FAULTS = ("kill-processor", "refuse-target", "kill-status-processor")


def say(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


@dataclass(frozen=True)
class Write:
    """One source version to write: a PUT of `size` bytes, or a delete marker."""

    at_s: float
    key: str
    size: int = 0
    delete: bool = False


def plan_writes(rng: random.Random, count: int, multipart: int, window_s: float) -> list[Write]:
    """`count` writes paced over `window_s`; a key's writes come in order, up to 3 versions plus a marker."""
    big_at = set(rng.sample(range(count // 10, count), multipart))
    writes_of: dict[str, int] = {}
    deleted: set[str] = set()
    plan = []
    for index in range(count):
        at_s = window_s * index / count
        live = [k for k, n in writes_of.items() if n < 3 and k not in deleted]
        choice = rng.random()
        if index in big_at:
            key, size = "big/%04d" % index, MPU_THRESHOLD + rng.randrange(1, MIB)
        elif choice < 0.08 and live:
            key = rng.choice(live)
            deleted.add(key)
            plan.append(Write(at_s, key, delete=True))
            continue
        elif choice < 0.40 and live:
            key, size = rng.choice(live), rng.randrange(0, 8192)
        elif choice < 0.46:
            key, size = "empty/%04d" % index, 0
        elif choice < 0.54:
            key, size = rng.choice(ODD_KEYS) % index, rng.randrange(1, 2048)
        else:
            key, size = "small/%04d" % index, rng.randrange(1, 16384)
        writes_of[key] = writes_of.get(key, 0) + 1
        plan.append(Write(at_s, key, size))
    return plan


def plan_faults(rng: random.Random, kinds: tuple[str, ...]) -> list[tuple[float, str]]:
    """(start s, fault) in a seeded order at seeded times, one after the other (each lasts at most ~40 s)."""
    order = list(kinds)
    rng.shuffle(order)
    at_s, planned = rng.uniform(8, 15), []
    for kind in order:
        planned.append((round(at_s, 1), kind))
        at_s += (OUTAGE_S if kind in ("freeze-target", "refuse-target") else 25) + rng.uniform(8, 25)
    return planned


@dataclass
class Components:
    """The pair's worker processes by role; one that exits unasked is restarted (systemd's Restart=always)."""

    pair: object
    running: dict = field(default_factory=dict)
    unexpected_exits: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    COMMANDS = {"status-processor": ("status-processor",), "processor": ("processor", "--site", SITE),
                "processor-2": ("processor", "--site", SITE), "populator": ("populator",)}

    def start(self, role: str):
        with self.lock:
            self.running[role] = self.pair.workers.start(*self.COMMANDS[role], name=role)
            return self.running[role]

    def kill(self, role: str) -> None:
        with self.lock:
            proc = self.running.pop(role)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def leave(self, role: str) -> None:
        with self.lock:
            proc = self.running.pop(role)
        self.pair.workers.terminate(proc)

    def supervise(self, elapsed) -> None:
        for role, proc in list(self.running.items()):
            if proc.poll() is not None:
                self.unexpected_exits.append({"at_s": elapsed(), "role": role, "rc": proc.returncode,
                                              "log": proc.log_path})
                say("%s exited on its own (rc %s): restarted" % (role, proc.returncode))
                self.start(role)


class Faults:
    """Injects the planned faults; each one's start and end are recorded (seconds from the campaign's start)."""

    def __init__(self, state, components: Components, proxy: RefusingProxy, rng: random.Random, started: float):
        self.state, self.components, self.proxy, self.rng, self.started = state, components, proxy, rng, started
        self.injected: list[dict] = []

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def run(self, kind: str) -> None:
        record = {"fault": kind, "at_s": self.elapsed()}
        say("fault: %s" % kind)
        if kind.startswith("kill-") and kind != "kill-kafka":
            role, killed = kind[len("kill-"):], time.monotonic()
            self.components.kill(role)
            time.sleep(self.rng.uniform(1, 5))  # the restart's delay is part of the fault
            restarted = self.components.start(role)
            if role == "processor":
                record["partitions_back_s"] = _partitions_back(restarted, killed)
        elif kind == "kill-kafka":
            record["down_s"] = self._restart_kafka()
        elif kind == "freeze-target":
            pid = self.state.target.process.pid
            os.killpg(pid, signal.SIGSTOP)
            time.sleep(OUTAGE_S)
            os.killpg(pid, signal.SIGCONT)
        elif kind == "refuse-target":
            self.proxy.refuse()
            time.sleep(OUTAGE_S)
            self.proxy.accept_again()
        elif kind == "second-processor":
            record["joined_s"] = _partitions_back(self.components.start("processor-2"), time.monotonic())
            time.sleep(self.rng.uniform(15, 30))
            self.components.leave("processor-2")
        record["end_s"] = self.elapsed()
        self.injected.append(record)

    def _restart_kafka(self) -> float:
        """kill -9 of the broker, then the same command line again (same port, same data dir, no new format)."""
        broker = self.state.kafka
        with open("/proc/%d/cmdline" % broker.process.pid, "rb") as cmdline:
            argv = [part.decode() for part in cmdline.read().split(b"\0") if part]
        killed = time.monotonic()
        os.killpg(broker.process.pid, signal.SIGKILL)
        wait_until(lambda: not broker.process.is_alive(), 30, "the broker to die")
        _reap(broker.process.pid)
        time.sleep(self.rng.uniform(2, 6))
        broker.process = spawn(argv, broker.log)
        self.state.save()  # lifecycle.stop stops the new broker
        port = int(broker.bootstrap.rsplit(":", 1)[1])
        wait_until(lambda: port_open(port), 90, "the restarted Kafka broker", broker.log)
        return round(time.monotonic() - killed, 1)


def _partitions_back(processor, since: float) -> float | None:
    """Seconds from `since` until `processor` was assigned partitions (None: not within 90 s)."""
    try:
        _wait_joined(processor)
    except SandboxError:
        return None
    return round(time.monotonic() - since, 1)


def _reap(pid: int) -> None:
    """The broker was started by this process (lifecycle.start): collect it."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Campaign:
    """One seeded run on its own sandbox."""

    def __init__(self, args, workdir: Path):
        self.args, self.workdir = args, workdir
        self.rng = random.Random(args.seed)
        self.bodies = random.Random(args.seed + 1)  # the writer's thread draws bodies, the faults' thread delays
        multipart = 1 if args.quick else 3
        self.faults_plan = plan_faults(self.rng, QUICK_FAULTS if args.quick else FULL_FAULTS)
        fault_end = self.faults_plan[-1][0] + OUTAGE_S + 10
        self.writes = plan_writes(self.rng, args.versions, multipart, max(fault_end, args.versions * 0.25))
        self.written: list[dict] = []
        self.write_errors: list[dict] = []

    def run(self, state) -> dict:
        proxy = RefusingProxy(urlparse(state.target.url).port)
        pair = make_pair(state, self.workdir, scan_interval_s=SCAN_INTERVAL_S, site_extra={"endpoint": proxy.url},
                         queue_processor={"mpuThreshold": MPU_THRESHOLD, "mpuPartSize": MPU_THRESHOLD})
        components = Components(pair)
        try:
            for role in ("status-processor", "processor", "populator"):
                components.start(role)
            _wait_joined(components.running["processor"])
            started = time.monotonic()
            faults = Faults(state, components, proxy, self.rng, started)
            self._inject_while_writing(pair, faults, components)
            written_s = faults.elapsed()
            statuses, waited = self._wait_settled(pair, components, faults)
            summary = self._check(pair, statuses)
            summary.update(faults=faults.injected, unexpected_exits=components.unexpected_exits,
                           written_s=written_s, settle_s=waited, duration_s=faults.elapsed())
            return summary
        finally:
            pair.workers.stop_all()
            pair.source_proxy.server.shutdown()  # not server_close(): it joins request threads, some may hang
            proxy.refuse()

    def _inject_while_writing(self, pair, faults: Faults, components: Components) -> None:
        writer = threading.Thread(target=self._write_all, args=(pair, faults.started), daemon=True)
        writer.start()
        for at_s, kind in self.faults_plan:
            while time.monotonic() - faults.started < at_s:
                components.supervise(faults.elapsed)
                time.sleep(0.2)
            faults.run(kind)
        while writer.is_alive():
            components.supervise(faults.elapsed)
            writer.join(1)
        say("%d versions written, %d write errors" % (len(self.written), len(self.write_errors)))

    def _write_all(self, pair, started: float) -> None:
        # Straight to the source's moto: through StoredReplicationProxy each PUT waits ~1 s for a "100 Continue"
        # the proxy never sends (measured: 1.2 writes/s), and the worker's view of the source is the same.
        source = client("s3", pair.sandbox.source.url)
        for write in self.writes:
            time.sleep(max(0.0, started + write.at_s - time.monotonic()))
            try:
                if write.delete:
                    reply = source.delete_object(Bucket=pair.source_bucket, Key=write.key)
                else:
                    reply = source.put_object(Bucket=pair.source_bucket, Key=write.key,
                                                   Body=self.bodies.randbytes(write.size))
                self.written.append({"key": write.key, "version_id": reply.get("VersionId"),
                                     "delete": write.delete})
            except Exception as exc:  # the source is never faulted: an error here is the bench's own problem
                self.write_errors.append({"key": write.key, "error": repr(exc)[:300]})

    def _wait_settled(self, pair, components: Components, faults: Faults) -> tuple[dict, float]:
        """Ledger statuses once every source version has one that is neither PENDING nor a waiting replay."""
        from crr_worker.ledger import LedgerReader, apply_records

        wanted = {(key, v["VersionId"]) for key, vs in list_versions(pair.source, pair.source_bucket).items()
                  for v in vs}
        reader, state, began = LedgerReader(pair.load()), {}, time.monotonic()
        deadline, last_report, open_ = began + self.args.settle_timeout_s, 0.0, wanted
        try:
            while True:
                apply_records(state, reader.poll(timeout_ms=500))
                statuses = {(s.entry.key, s.entry.version_id): s for s in state.values() if s.site == SITE}
                open_ = {k for k in wanted if k not in statuses or statuses[k].status == "PENDING"
                         or (statuses[k].status == "FAILED" and statuses[k].replay_at)}
                if not open_ or time.monotonic() > deadline:
                    break
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    say("waiting: %d of %d versions not settled" % (len(open_), len(wanted)))
                components.supervise(faults.elapsed)
                time.sleep(1)
        finally:
            reader.close()
        if open_:
            say("settle deadline passed with %d versions open" % len(open_))
        return statuses, round(time.monotonic() - began, 1)

    def _check(self, pair, statuses: dict) -> dict:
        say("settled: comparing both sides")
        source = list_versions(pair.source, pair.source_bucket)
        target = target_versions(pair.target, pair.target_bucket)
        findings = compare(source, target)
        check_multipart_bodies(pair, target, findings)
        check_ledger(statuses, source, findings)
        say("compared: %s; running crr-worker verify" % json.dumps(findings.counts))
        verify = pair.workers.run("verify", "--bucket", pair.source_bucket, "--json", timeout=600)
        verify_lines = [json.loads(line) for line in verify.stdout.splitlines() if line.startswith("{")]
        counts = {"source_versions": sum(len(v) for v in source.values()),
                  "source_markers": sum(1 for vs in source.values() for v in vs if v["Marker"]),
                  "source_keys": len(source), "target_versions": sum(len(v) for v in target.values()),
                  "multipart": sum(1 for w in self.writes if w.size >= MPU_THRESHOLD),
                  "written": len(self.written), "write_errors": len(self.write_errors)}
        return {"counts": counts, "checks": findings.counts, "examples": findings.examples,
                "verify": {"rc": verify.returncode, "summary": [v for v in verify_lines if v.get("summary")],
                           "findings": [v for v in verify_lines if not v.get("summary")][:10]},
                "late_restores_logged": _logged_count(pair, "a late version was written: the newer latest put "
                                                            "back on top")}


def _wait_joined(processor) -> None:
    wait_until(lambda: any(r.get("message") == "partitions assigned" and r.get("partitions")
                           for r in log_records(processor)), 90, "the processor to join its group")


def _logged_count(pair, message: str) -> int:
    found = 0
    for proc in pair.workers.running:
        found += sum(1 for r in log_records(proc) if r.get("message") == message)
    return found


def passed(summary: dict) -> bool:
    zero = ("lost", "lost_markers", "duplicated", "out_of_order", "latest_differs", "body_differs", "not_replicas",
            "ledger_failed", "ledger_pending", "ledger_missing", "replays_waiting")
    return all(summary["checks"][check] == 0 for check in zero) and summary["counts"]["write_errors"] == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--versions", type=int, default=None, help="default 1000, with --quick 200")
    parser.add_argument("--quick", action="store_true", help="200 versions, 3 faults")
    parser.add_argument("--settle-timeout-s", type=float, default=1200)
    parser.add_argument("--workdir", default=None, help="default /tmp/campaign-<seed>-<time>")
    args = parser.parse_args(argv)
    args.versions = args.versions or (200 if args.quick else 1000)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped campaign still stops its sandbox
    workdir = Path(args.workdir or "/tmp/campaign-%d-%s" % (args.seed, time.strftime("%H%M%S")))
    workdir.mkdir(parents=True, exist_ok=True)
    say("campaign seed %d, %d versions, evidence in %s" % (args.seed, args.versions, workdir))
    state_dir = str(workdir / "sandbox")
    campaign = Campaign(args, workdir)
    try:
        summary = campaign.run(lifecycle.start(state_dir))
        summary = dict({"seed": args.seed, "versions": args.versions, "quick": args.quick,
                        "passed": passed(summary)}, **summary)
        assert set(summary["checks"]) == set(CHECKS)
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2), flush=True)
    finally:
        say("stopping the sandbox")
        lifecycle.stop(state_dir)
        shutil.rmtree(os.path.join(state_dir, "kafka-data"), ignore_errors=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # StoredReplicationProxy's request threads are no daemons: one left hanging would keep us
