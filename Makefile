# inferq: `make up` runs the platform on this machine, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Flags for `inferq up`, e.g. make up ARGS='--port 8001'.
ARGS ?=

.PHONY: up test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "inferq needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

up: $(VENV)/.installed
	$(BIN)/inferq up $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# inferq, the classic Celery design and a sync endpoint on the standard workloads
# (forest, logistic; concurrency 1, 8, 32, 128); results in benchmark-results/.
bench: $(VENV)/.installed-dev
	$(BIN)/inferq bench

clean:
	rm -rf $(VENV) .inferq .pytest_cache .mypy_cache .ruff_cache
