# relay — `make run` serves the demo; `make test` runs lint and every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint fmt install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/relay serve

lint: $(STAMP)
	$(BIN)/ruff check relay tests bench
	$(BIN)/ruff format --check relay tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff check --fix relay tests bench
	$(BIN)/ruff format relay tests bench

# Benchmarks (bench/): every part in its own process, on loopback; see docs/performance.md.
.PHONY: bench bench-full

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench --full

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
