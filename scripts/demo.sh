#!/usr/bin/env bash
# The main job on the embedded sandbox: local S3/IAM endpoints + Kafka, then
# setup-replication.yml (IAM, buckets, rules, the worker), then an object visibly replicated.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/.venv/bin"
state_dir="${CRR_SANDBOX_STATE_DIR:-$PWD/.sandbox}"
export CRR_SANDBOX_STATE_DIR="$state_dir"

"$bin/python" -m sandbox start --state-dir "$state_dir"
"$bin/python" -m sandbox check --state-dir "$state_dir"

# backbeat.crr resolves to this checkout.
collections="$state_dir/collections"
mkdir -p "$collections/ansible_collections/backbeat"
ln -sfn "$PWD" "$collections/ansible_collections/backbeat/crr"
export ANSIBLE_COLLECTIONS_PATH="$collections" ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-0}"

PATH="$bin:$PATH" ansible-playbook -i examples/sandbox/inventory.yml examples/sandbox/demo.yml
"$bin/python" -m sandbox run-worker "$state_dir/worker-commands.json" --state-dir "$state_dir"
"$bin/python" scripts/demo_replicate.py

echo
echo "The sandbox and the worker keep running: $bin/python -m sandbox status | stop"
