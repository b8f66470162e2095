# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(BIN)/kmquant demo

test: $(STAMP_TEST)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP_TEST)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache .hypothesis
