#!/usr/bin/env bash
# The main job on the embedded sandbox: local S3/IAM endpoints + Kafka, proven to answer.
# (The replication setup and an object visibly replicated are added by the deployment work.)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py -m sandbox start
$py -m sandbox check
echo
echo "Sandbox running. Stop it with: make sandbox-stop"
