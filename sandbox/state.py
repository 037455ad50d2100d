"""What runs in a sandbox: endpoints, ports and processes, saved as JSON in its state dir."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from sandbox.processes import ProcessRef

STATE_FILE = "state.json"


@dataclass
class KafkaBroker:
    bootstrap: str
    controller_port: int
    process: ProcessRef
    log: str


@dataclass
class S3Endpoint:
    """A moto server serving S3, IAM, STS and SQS for one account."""

    name: str
    url: str
    account_id: str
    process: ProcessRef
    log: str
    region: str = "us-east-1"


@dataclass
class SandboxState:
    state_dir: str
    kafka: KafkaBroker | None = None
    endpoints: dict[str, S3Endpoint] = field(default_factory=dict)
    # Processes run on the sandbox's behalf (the demo's worker components), stopped with it.
    workers: dict[str, ProcessRef] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def source(self) -> S3Endpoint:
        return self.endpoints["source"]

    @property
    def target(self) -> S3Endpoint:
        return self.endpoints["target"]

    def services(self) -> list[tuple[str, ProcessRef]]:
        """Kafka and the moto servers."""
        found = [("kafka", self.kafka.process)] if self.kafka else []
        return found + [(name, ep.process) for name, ep in self.endpoints.items()]

    def processes(self) -> list[tuple[str, ProcessRef]]:
        """Every recorded process, workers first (they depend on the services)."""
        return list(self.workers.items()) + self.services()

    def save(self) -> None:
        path = os.path.join(self.state_dir, STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            json.dump(asdict(self), out, indent=2, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: str) -> SandboxState | None:
        path = os.path.join(state_dir, STATE_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as src:
            data = json.load(src)
        kafka = data.get("kafka")
        return cls(
            state_dir=data["state_dir"],
            kafka=KafkaBroker(**{**kafka, "process": ProcessRef.from_dict(kafka["process"])}) if kafka else None,
            endpoints={
                name: S3Endpoint(**{**ep, "process": ProcessRef.from_dict(ep["process"])})
                for name, ep in data.get("endpoints", {}).items()
            },
            workers={name: ProcessRef.from_dict(ref) for name, ref in data.get("workers", {}).items()},
        )
