# Two commands from a fresh clone: `make demo` and `make test`. Each creates .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

# `make bench BENCH_INPUTS=../shared/corpus/photos` for the README's table.
BENCH_INPUTS ?=
BENCH_ARGS ?= -k 16 64 256

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[web]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(BIN)/kmquant demo

test: $(STAMP_TEST)
	@scripts/install-browser.sh
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP_TEST)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m ruff format --check src tests benchmarks
	$(BIN)/python -m mypy

bench: $(STAMP_TEST)
	$(BIN)/python -m pip install --quiet imagequant faiss-cpu
	@command -v pngquant >/dev/null || { apt-get update -qq && apt-get install -y -qq pngquant; } \
		|| echo "bench: could not install pngquant (apt-get install pngquant); its rows are skipped"
	$(BIN)/python benchmarks/compare.py $(BENCH_INPUTS) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache .hypothesis
