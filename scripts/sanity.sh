#!/usr/bin/env bash
# ansible-test sanity on the collection's Ansible content, copied into the
# ansible_collections/backbeat/crr tree that ansible-test requires.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/backbeat/crr"
mkdir -p "$dest"
cd "$repo"
# Tracked and new (not ignored) files of the collection proper; the worker, the
# sandbox and the Python tests have their own linters.
git ls-files -co --exclude-standard -- galaxy.yml meta plugins roles playbooks tests/sanity README.md LICENSE \
  | while read -r f; do [ -e "$f" ] && mkdir -p "$dest/$(dirname "$f")" && cp -p "$f" "$dest/$f"; done
# ansible-test bootstraps pip with a script from ci-files.testing.ansible.com, which
# this network does not reach: provide the local stand-in under the cache name it reads.
pip_version="$(grep -ho "pip='[0-9.]*'" "$("$venv/bin/python" -c 'import ansible_test,os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -1 | cut -d"'" -f2)"
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/scripts/ansible_test_get_pip.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
cd "$dest"
git init -q && git add -A
PATH="$venv/bin:$PATH" ansible-test sanity --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --requirements --color no "$@"
