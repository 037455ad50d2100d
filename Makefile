# backbeat.crr developer commands. The two that matter: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint unit pytest sanity molecule sandbox-start sandbox-status sandbox-stop clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt worker/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# PyPI downloads of large wheels fail now and then here: try three times.
	for try in 1 2 3; do $(BIN)/pip install --quiet -r requirements-dev.txt -e ./worker && break; \
	  [ $$try -lt 3 ] || exit 1; sleep 5; done
	touch $(STAMP)

## The main job on the embedded sandbox.
demo: venv
	scripts/demo.sh

## Every check: linters, unit + integration tests, ansible-test sanity, molecule; then sanity and the
## modules' playbook tests on the oldest ansible-core that meta/runtime.yml claims (.venv/oldest).
test: lint pytest sanity molecule
	scripts/oldest.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/yamllint --strict .
	# ansible-lint --profile production (.ansible-lint); its syntax check loads backbeat.crr.* from a
	# collections path where the collection is this checkout, as an installed copy would be.
	work=$$(mktemp -d) && mkdir -p $$work/ansible_collections/backbeat && \
	  ln -s $(CURDIR) $$work/ansible_collections/backbeat/crr && \
	  PATH="$(CURDIR)/$(BIN):$$PATH" ANSIBLE_COLLECTIONS_PATH=$$work $(BIN)/ansible-lint; \
	  rc=$$?; rm -rf $$work; exit $$rc
	$(BIN)/antsibull-changelog lint

pytest: venv
	scripts/pytest.sh

unit: venv
	$(BIN)/pytest tests/unit

sanity: venv
	scripts/sanity.sh

# A Debian host booted with systemd-nspawn (root; debootstrap + systemd-container installed).
molecule: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/molecule test

sandbox-start: venv
	$(BIN)/python -m sandbox start

sandbox-status: venv
	$(BIN)/python -m sandbox status

sandbox-stop: venv
	$(BIN)/python -m sandbox stop

clean: sandbox-stop
	rm -rf $(VENV) .sandbox .pytest_cache .ruff_cache
