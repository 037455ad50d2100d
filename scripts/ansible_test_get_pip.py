"""Stand-in for the get-pip bootstrap script that ansible-test downloads from
ci-files.testing.ansible.com (unreachable here): installs pip into the calling
virtualenv from Python's bundled ensurepip, then runs pip with the given arguments,
which fetches the exact pip version ansible-test asks for from PyPI."""

import ensurepip
import importlib
import os
import runpy
import sys

ensurepip.bootstrap(upgrade=True)
importlib.invalidate_caches()
# get-pip.py takes `pip install` arguments plus its own --no-setuptools/--no-wheel.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a filtered environment: keep a site CA bundle usable.
ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
if os.path.exists(ca_bundle):
    args = ["--cert", ca_bundle, *args]
sys.argv = ["pip", "install", "--upgrade", *args]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
