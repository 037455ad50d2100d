"""Run ansible-playbook against this collection, as a user would, and read its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CRR_ANSIBLE_PLAYBOOK: another install's ansible-playbook (scripts/oldest.sh: the oldest ansible-core that
# meta/runtime.yml claims), whose own Python then runs the modules too, with its own boto3.
ANSIBLE_PLAYBOOK = os.environ.get("CRR_ANSIBLE_PLAYBOOK") or os.path.join(os.path.dirname(sys.executable),
                                                                         "ansible-playbook")
MODULE_PYTHON = (os.path.join(os.path.dirname(ANSIBLE_PLAYBOOK), "python") if os.environ.get("CRR_ANSIBLE_PLAYBOOK")
                 else sys.executable)
# The json callback's collection, from this venv's "ansible" package: an ansible-core-only install lacks it.
_POSIX = os.path.join(sysconfig.get_paths()["purelib"], "ansible_collections", "ansible", "posix")


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    tasks: list[dict]  # ansible.posix.json callback: [{"task": {...}, "hosts": {host: result}}]

    def result(self, task_name: str, host: str = "localhost") -> dict:
        """The result of the last task run with this name on host."""
        for task in reversed(self.tasks):
            if task["task"]["name"] == task_name and host in task["hosts"]:
                return task["hosts"][host]
        raise KeyError("no task named %r ran on %s; ran: %s"
                       % (task_name, host, [t["task"]["name"] for t in self.tasks]))

    @property
    def changed_tasks(self) -> list[str]:
        return [t["task"]["name"] for t in self.tasks
                if any(r.get("changed") for r in t["hosts"].values())]


def collections_path(tmp_root: str) -> str:
    """A collections dir where backbeat.crr resolves to this checkout, and ansible.posix to this venv's (symlinks)."""
    for namespace, name, target in (("backbeat", "crr", REPO), ("ansible", "posix", _POSIX)):
        ns = os.path.join(tmp_root, "ansible_collections", namespace)
        os.makedirs(ns, exist_ok=True)
        link = os.path.join(ns, name)
        if not os.path.islink(link):
            os.symlink(target, link)
    return tmp_root


def run_playbook(playbook, extra_vars: dict | None = None, check: bool = False,
                 diff: bool = False, verbosity: int = 0, json_output: bool = True) -> PlaybookRun:
    """Run a playbook (a path, or a list of plays written to a temp file) on localhost.

    json_output=False keeps the default human callback (to test what -v / --diff print).
    """
    with tempfile.TemporaryDirectory() as tmp:
        if not isinstance(playbook, str):
            path = os.path.join(tmp, "play.yml")
            with open(path, "w") as out:
                yaml.safe_dump(playbook, out, sort_keys=False)
            playbook = path
        argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", playbook]
        if extra_vars:
            argv += ["-e", json.dumps(extra_vars)]
        argv += ["--check"] * check + ["--diff"] * diff + (["-" + "v" * verbosity] if verbosity else [])
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": collections_path(tmp),
            "ANSIBLE_PYTHON_INTERPRETER": MODULE_PYTHON,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        }
        if json_output:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp)
    tasks = []
    if json_output and proc.stdout.strip().startswith("{"):
        tasks = [t for play in json.loads(proc.stdout)["plays"] for t in play["tasks"]]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, tasks)


# The idempotence proof of a module: check, apply, apply again, check again.
FOUR_STEPS = ["check", "apply", "apply again", "check again"]


def module_task(module: str, name: str, url: str, check: bool = False, **options) -> dict:
    """A task running `module` against the S3/IAM endpoint `url` with the sandbox's test keys."""
    connection = {"endpoint_url": url, "access_key": "testing", "secret_key": "testing"}
    entry = {"name": name, module: {**connection, **options}}
    if check:
        entry["check_mode"] = True
    return entry


def play(*tasks) -> list[dict]:
    return [{"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}]


def four_steps(module: str, url: str, **options) -> list[dict]:
    return play(*[module_task(module, step, url, check=step.startswith("check"), **options) for step in FOUR_STEPS])


def changed_by_step(run: PlaybookRun) -> list[bool]:
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [run.result(step)["changed"] for step in FOUR_STEPS]
