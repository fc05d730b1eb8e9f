# stepscope: `make run` starts everything on this machine; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that these machines carry on disk; override on a GPU host
# (or install torch yourself first: setup keeps an importable torch).
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= var
# pytest processes for `make test` (pytest-xdist); each is single-threaded (tests/conftest.py). docs/testing.md.
TEST_PROCESSES ?= 2

.PHONY: setup run test lint browser-deps clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.ready

# The explorer's JavaScript linter (ESLint, versions locked in package-lock.json) from the npm registry.
node_modules/.ready: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	$(VENV)/bin/stepscope up --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

lint: setup node_modules/.ready
	$(VENV)/bin/ruff check backend tests benchmarks
	$(VENV)/bin/ruff format --check backend tests benchmarks
	npx --no-install eslint frontend

test: setup browser-deps node_modules/.ready
	$(VENV)/bin/ruff check backend tests benchmarks
	npx --no-install eslint frontend
	node --test frontend/tests/
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --durations=15

clean:
	rm -rf $(VENV) node_modules runs var test-output
