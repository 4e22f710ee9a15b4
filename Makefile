# `make run`: set up and run the service on the embedded default.  `make test`: set up and run the tests.
# `make bench`: every benchmark, one table of figures (PostgreSQL needed).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format typecheck bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	scripts/run-demo

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# Every bench (bench/all.py), one table; < 10 min on 2 cores. BENCH_DATABASE_URL, BENCH_REDIS_URL (a Redis
# database of its own; unset: no Redis). `make bench BENCH_ARGS="--markdown docs/benchmarks.md"` updates the docs.
bench:
	$(PY) bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var db.sqlite3
