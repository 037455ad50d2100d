"""A single-node Apache Kafka broker in KRaft mode, its jars resolved from Maven Central."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

from sandbox.processes import SandboxError, free_port, port_open, spawn, wait_until
from sandbox.state import KafkaBroker

HERE = os.path.dirname(os.path.abspath(__file__))
POM = os.path.join(HERE, "kafka-pom.xml")
LOG4J = os.path.join(HERE, "log4j.properties")
HEAP = "-Xmx512m"


def kafka_version() -> str:
    with open(POM) as pom:
        return re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read()).group(1)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "backbeat-crr")


def resolve_jars() -> str:
    """Directory of the broker's jars; downloads them only when the cache lacks them."""
    libs = os.path.join(cache_dir(), "kafka-%s" % kafka_version(), "libs")
    marker = os.path.join(libs, ".complete")
    if os.path.exists(marker):
        return libs
    mvn = _require("mvn", "Maven resolves the Kafka jars", "apt-get install -y maven")
    os.makedirs(libs, exist_ok=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", POM, "dependency:copy-dependencies",
         "-DincludeScope=runtime", "-DoutputDirectory=%s" % libs],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SandboxError("Maven could not resolve the Kafka jars (is Maven Central reachable?):\n%s"
                           % (proc.stdout + proc.stderr)[-2000:])
    open(marker, "w").close()
    return libs


def start(state_dir: str) -> KafkaBroker:
    """Format a fresh KRaft log dir under state_dir and start the broker; returns once it listens."""
    java = _require_java()
    libs = resolve_jars()
    port, controller_port = free_port(), free_port()
    data_dir = os.path.join(state_dir, "kafka-data")
    shutil.rmtree(data_dir, ignore_errors=True)  # a new sandbox starts empty, as moto does
    props = _write_properties(state_dir, data_dir, port, controller_port)
    classpath = os.path.join(libs, "*")
    subprocess.run(
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
         "-t", uuid.uuid4().hex[:22], "-c", props],
        check=True, capture_output=True,
    )
    log = os.path.join(state_dir, "kafka.log")
    process = spawn(
        [java, HEAP, "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
         "-Dkafka.logs.dir=%s" % state_dir, "-Dlog4j.configuration=file:%s" % LOG4J,
         "-cp", classpath, "kafka.Kafka", props],
        log,
    )
    wait_until(lambda: port_open(port) or not process.is_alive(), 60, "Kafka broker", log)
    if not process.is_alive():
        raise SandboxError("Kafka broker exited at start (see %s and %s/server.log)" % (log, state_dir))
    return KafkaBroker(bootstrap="127.0.0.1:%d" % port, controller_port=controller_port,
                       process=process, log=log)


def wait_ready(bootstrap: str, timeout: float = 60) -> None:
    """Block until a produce/consume round trip through the broker succeeds."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    payload = uuid.uuid4().bytes

    def round_trip() -> bool:
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                     max_block_ms=5000)
            meta = producer.send("sandbox-ready", payload).get(timeout=5)
            producer.close()
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
            part = TopicPartition("sandbox-ready", meta.partition)
            consumer.assign([part])
            consumer.seek(part, meta.offset)
            found = any(record.value == payload for record in consumer)
            consumer.close()
            return found
        except Exception:  # the broker is still electing itself; try again
            return False

    wait_until(round_trip, timeout, "Kafka produce/consume round trip")


def _write_properties(state_dir: str, data_dir: str, port: int, controller_port: int) -> str:
    path = os.path.join(state_dir, "server.properties")
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@127.0.0.1:%d" % controller_port,
        "listeners": "PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d" % (port, controller_port),
        "advertised.listeners": "PLAINTEXT://127.0.0.1:%d" % port,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    with open(path, "w") as out:
        out.writelines("%s=%s\n" % item for item in lines.items())
    return path


def _require(command: str, why: str, fix: str) -> str:
    found = shutil.which(command)
    if not found:
        raise SandboxError("'%s' not found: %s. Install it: %s" % (command, why, fix))
    return found


def _require_java() -> str:
    java = _require("java", "the Kafka broker runs on Java 17+", "apt-get install -y openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise SandboxError("Java 17+ is needed for the Kafka broker, found: %s. Install it: "
                           "apt-get install -y openjdk-17-jre-headless" % out.splitlines()[0:1])
    return java
