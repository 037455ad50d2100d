#!/usr/bin/env bash
# Runs the whole pytest suite; "no tests collected" (exit 5) is a failure here,
# since this project always has tests and an empty run would prove nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
