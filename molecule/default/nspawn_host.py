#!/usr/bin/env python3
"""A throwaway systemd host for molecule: a Debian rootfs booted with systemd-nspawn.

    nspawn_host.py rootfs                   build the cached rootfs if missing; print its path
    nspawn_host.py start --dir DIR          boot a container on an overlay of the rootfs; print JSON
    nspawn_host.py stop --dir DIR           power it off, unmount, remove DIR
    nspawn_host.py free-port                print a TCP port free on 127.0.0.1 (the container shares it)

The rootfs is built once with debootstrap into a temporary directory next to the cache and renamed
into place only when complete, so a half-built rootfs is never used. Every container gets its own
overlay (the cache is the read-only lower layer), so runs never change the cache. The container
shares the host's network namespace: services the test sandbox runs on the host's 127.0.0.1 are
reachable from inside. `stop` leaves no process and no mount behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SUITE = "bookworm"
MIRROR = os.environ.get("CRR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the role needs on the host, so the container never needs a package index:
# systemd to run the units, python3 for Ansible, python3-venv (with its bundled pip wheel) for the venv.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "procps", "iproute2"]
# Units that make no sense in a headless container sharing the host's network.
MASKED_UNITS = ["console-getty.service", "getty@.service", "systemd-networkd.service",
                "systemd-networkd.socket", "systemd-resolved.service", "systemd-timesyncd.service",
                "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service"]
RECIPE = json.dumps({"suite": SUITE, "packages": PACKAGES, "masked": MASKED_UNITS, "v": 1}, sort_keys=True)
RECIPE_ID = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
MARKER = ".backbeat-crr-rootfs"
BOOT_TIMEOUT = 60


class HostError(Exception):
    """A problem the operator can fix; the message says how."""


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "backbeat-crr")


def rootfs_path() -> str:
    return os.path.join(cache_root(), "rootfs-%s" % SUITE)


def ensure_rootfs() -> str:
    """Path of a complete cached rootfs of the current recipe; builds it when missing or stale."""
    final = rootfs_path()
    if _recipe_of(final) == RECIPE_ID:
        return final
    _require("debootstrap", "apt-get install -y debootstrap")
    os.makedirs(cache_root(), exist_ok=True)
    building = tempfile.mkdtemp(prefix="rootfs-%s.building." % SUITE, dir=cache_root())
    try:
        began = time.monotonic()
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, building, MIRROR],
             "debootstrap of Debian %s from %s (is the mirror reachable?)" % (SUITE, MIRROR))
        _configure_rootfs(building)
        with open(os.path.join(building, MARKER), "w") as out:
            out.write(RECIPE_ID + "\n")
        if os.path.exists(final):  # stale recipe: move aside, then drop
            stale = tempfile.mkdtemp(prefix="rootfs-%s.stale." % SUITE, dir=cache_root())
            os.rename(final, os.path.join(stale, "old"))
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(building, final)
        print("rootfs built in %.0f s: %s" % (time.monotonic() - began, final), file=sys.stderr)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def _configure_rootfs(root: str) -> None:
    for unit in MASKED_UNITS:
        link = os.path.join(root, "etc/systemd/system", unit)
        if not os.path.lexists(link):
            os.symlink("/dev/null", link)
    # Clean apt state: the image is used offline, the role installs no Debian package.
    subprocess.run(["chroot", root, "apt-get", "clean"], check=False)
    for path in ("etc/machine-id", "var/lib/dbus/machine-id"):
        full = os.path.join(root, path)
        if os.path.lexists(full):
            os.remove(full)
    # An empty machine-id makes systemd generate a fresh one at each boot.
    open(os.path.join(root, "etc/machine-id"), "w").close()


def start(run_dir: str, name: str) -> dict:
    """Boot a container on an overlay of the rootfs in run_dir; returns its state (also saved)."""
    _require("systemd-nspawn", "apt-get install -y systemd-container")
    lower = ensure_rootfs()
    state = load_state(run_dir)
    if state and _alive(state["nspawn_pid"], state["nspawn_start"]):
        return state
    stop(run_dir)  # a half-dead container is cleaned up whole, then started afresh
    os.makedirs(run_dir, exist_ok=True)
    upper, work, merged = (os.path.join(run_dir, d) for d in ("upper", "work", "root"))
    for d in (upper, work, merged):
        os.makedirs(d, exist_ok=True)
    _run(["mount", "-t", "overlay", "overlay", "-o",
          "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, work), merged], "overlay mount")
    state = {"name": name, "root": merged, "mounted": True}
    save_state(run_dir, state)
    log_path = os.path.join(run_dir, "nspawn.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["systemd-nspawn", "-b", "--register=no", "--keep-unit", "--console=passive",
             "--machine=%s" % name, "-D", merged],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    state.update(nspawn_pid=proc.pid, nspawn_start=_start_time(proc.pid), log=log_path)
    save_state(run_dir, state)
    init_pid = _wait_for(lambda: _container_init(proc), 20, "container systemd", log_path)
    state["init_pid"] = init_pid
    save_state(run_dir, state)
    with open(os.path.join(run_dir, "init.pid"), "w") as out:
        out.write("%d\n" % init_pid)

    def booted() -> bool:
        if proc.poll() is not None:
            raise HostError("systemd-nspawn exited with %s at boot (see %s)" % (proc.returncode, log_path))
        out = subprocess.run(_nsenter(init_pid) + ["systemctl", "is-system-running"],
                             capture_output=True, text=True).stdout.strip()
        return out in ("running", "degraded")

    _wait_for(booted, BOOT_TIMEOUT, "container boot", log_path)
    return state


def stop(run_dir: str) -> list[str]:
    """Power the container off (SIGKILL after a timeout), unmount and remove run_dir."""
    done = []
    state = load_state(run_dir) or {}
    pid, started = state.get("nspawn_pid"), state.get("nspawn_start")
    if pid and _alive(pid, started):
        # SIGTERM makes nspawn ask the container's systemd for a clean poweroff.
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if not _alive(pid, started):
                break
            try:
                os.killpg(pid, sig) if sig == signal.SIGKILL else os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid, started):
                _reap(pid)
                time.sleep(0.2)
        done.append("container")
    merged = os.path.join(run_dir, "root")
    if _is_mountpoint(merged):
        _run(["umount", merged], "unmount of %s" % merged)
        done.append("overlay")
    if os.path.isdir(run_dir):
        leftover = [m for m in _mounts() if m == run_dir or m.startswith(run_dir + "/")]
        if leftover:
            raise HostError("mounts left under %s: %s; unmount them by hand" % (run_dir, leftover))
        shutil.rmtree(run_dir)
    return done


def load_state(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "state.json")) as src:
            return json.load(src)
    except FileNotFoundError:
        return None


def save_state(run_dir: str, state: dict) -> None:
    path = os.path.join(run_dir, "state.json")
    with open(path + ".tmp", "w") as out:
        json.dump(state, out, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _container_init(proc: subprocess.Popen) -> int | None:
    """PID (host view) of the container's systemd: the child of systemd-nspawn."""
    if proc.poll() is not None:
        raise HostError("systemd-nspawn exited with %s at start" % proc.returncode)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                head, tail = stat.read().rsplit(")", 1)
        except OSError:
            continue
        if int(tail.split()[1]) == proc.pid and head.endswith("(systemd"):
            return int(entry)
    return None


def _nsenter(pid: int) -> list[str]:
    return ["nsenter", "--target=%d" % pid, "--mount", "--uts", "--ipc", "--net", "--pid", "--"]


def _recipe_of(root: str) -> str | None:
    try:
        with open(os.path.join(root, MARKER)) as src:
            return src.read().strip()
    except OSError:
        return None


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as src:
        return [line.split()[4] for line in src]


def _is_mountpoint(path: str) -> bool:
    return os.path.realpath(path) in _mounts()


def _start_time(pid: int) -> int | None:
    try:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and _start_time(pid) == started


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_for(predicate, timeout: float, what: str, log_path: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise HostError("%s not ready after %.0f s (see %s)" % (what, timeout, log_path))


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HostError("%s failed (exit %d):\n%s" % (what, proc.returncode, (proc.stdout + proc.stderr)[-3000:]))


def _require(command: str, fix: str) -> None:
    if shutil.which(command) is None:
        raise HostError("'%s' not found. Install it: %s" % (command, fix))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["rootfs", "start", "stop", "free-port"])
    parser.add_argument("--dir", help="the container's run directory (start, stop)")
    parser.add_argument("--name", default="crr-host", help="machine name / hostname (start)")
    args = parser.parse_args(argv)
    if args.command == "free-port":
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            print(sock.getsockname()[1])
        return 0
    if os.geteuid() != 0:
        print("nspawn_host: debootstrap, mount and systemd-nspawn need root", file=sys.stderr)
        return 2
    try:
        if args.command == "rootfs":
            print(ensure_rootfs())
        elif not args.dir:
            parser.error("--dir is required for %s" % args.command)
        elif args.command == "start":
            print(json.dumps(start(os.path.abspath(args.dir), args.name)))
        else:
            print(json.dumps({"stopped": stop(os.path.abspath(args.dir))}))
    except HostError as exc:
        print("nspawn_host: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
