#!/usr/bin/env bash
# The oldest ansible-core that meta/runtime.yml claims, with the oldest boto3 that requirements.txt allows
# (requirements-oldest.txt, in .venv/oldest): ansible-test sanity on it, then playbook tests that run every
# module at least once with its ansible-playbook and its Python (tests/playbook.py: CRR_ANSIBLE_PLAYBOOK).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
venv="$repo/.venv/oldest"  # inside .venv: ignored by git, ruff, yamllint and ansible-lint like the main venv
stamp="$venv/.installed-$(sha1sum requirements-oldest.txt | cut -c1-12)"
if [ ! -e "$stamp" ]; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  # PyPI downloads fail now and then here: try three times.
  for try in 1 2 3; do "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-oldest.txt && break
    [ "$try" -lt 3 ] || exit 1; sleep 5; done
  touch "$stamp"
fi
"$venv/bin/python" -c "import ansible.release as r; print('ansible-core', r.__version__)"

VENV="$venv" scripts/sanity.sh

# One idempotence (check, apply, apply again, check again) or apply test per module, the diff and the
# refusals of bad input, the amazon.aws connection options and environment variables; then the setup
# playbook run twice (the second changes nothing) and the worker role in a first --check.
it=tests/integration
CRR_ANSIBLE_PLAYBOOK="$venv/bin/ansible-playbook" scripts/pytest.sh -q \
  "$it/test_crr_role.py::test_create_is_idempotent_in_four_steps" \
  "$it/test_crr_role.py::test_bad_input_fails_before_any_call_and_creates_nothing" \
  "$it/test_crr_policy.py::test_four_steps_create_then_changed_document" \
  "$it/test_crr_policy.py::test_diff_shows_the_document_change" \
  "$it/test_crr_bucket_replication.py::test_cloudserver_two_role_configuration_to_a_scality_site_is_idempotent" \
  "$it/test_crr_bucket_replication.py::test_bucket_creation_is_in_the_diff" \
  "$it/test_crr_endpoint.py::test_scality_site_is_written_and_rerun_unchanged" \
  "$it/test_crr_endpoint.py::test_check_mode_writes_nothing_and_shows_the_diff" \
  "$it/test_crr_bucket_notification.py::test_queue_policy_and_configuration_are_created_once_and_deliver_object_events" \
  "$it/test_crr_connection.py::test_amazon_aws_option_names_reach_the_endpoint" \
  "$it/test_crr_connection.py::test_environment_alone_gives_endpoint_keys_and_region" \
  "$it/test_setup_replication.py::test_setup_validates_and_a_second_run_changes_nothing" \
  "$it/test_worker_role_check_mode.py"
