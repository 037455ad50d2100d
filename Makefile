# backbeat.crr developer commands. The two that matter: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint unit pytest sanity sandbox-start sandbox-status sandbox-stop clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt worker/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e ./worker
	touch $(STAMP)

## The main job on the embedded sandbox.
demo: venv
	scripts/demo.sh

## Every check: linters, unit + integration tests, ansible-test sanity.
test: lint pytest sanity

lint: venv
	$(BIN)/ruff check .
	$(BIN)/yamllint --strict .

pytest: venv
	scripts/pytest.sh

unit: venv
	$(BIN)/pytest tests/unit

sanity: venv
	scripts/sanity.sh

sandbox-start: venv
	$(BIN)/python -m sandbox start

sandbox-status: venv
	$(BIN)/python -m sandbox status

sandbox-stop: venv
	$(BIN)/python -m sandbox stop

clean: sandbox-stop
	rm -rf $(VENV) .sandbox .pytest_cache .ruff_cache
