# booking-etl: every target sets up the virtualenv it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=

.PHONY: demo test test-fast soak lint format bench bench-anomalies clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'
	touch $(STAMP)

demo: $(STAMP)  ## run the demo end to end on embedded defaults (SQLite source, SQLite store, local Parquet)
	$(BIN)/etl demo etl-demo

test: $(STAMP)  ## run the whole test suite (real PostgreSQL/MariaDB where they answer)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the fast loop: unit tests only, no servers, no slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not mariadb"

soak: $(STAMP)  ## 3 workers x 20 jobs for SOAK_SECONDS (default 300) on PostgreSQL, MariaDB and S3 (moto); not in `test`
	ETL_REQUIRE_DBS=1 $(BIN)/python -m pytest tests/soak.py -s -q --basetemp=/tmp/booking-etl-soak

lint: $(STAMP)  ## ruff lint + format check, mypy on etl/, the layer contracts (lint-imports)
	$(BIN)/ruff check etl tests bench
	$(BIN)/ruff format --check etl tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,all,bench]'
	touch $(BENCH_STAMP)

# benchmarks against the local PostgreSQL and MariaDB; prints Markdown tables (results go into
# BENCHMARKS.md by hand). A part: make bench BENCH_ARGS='--quick' or '--only postgresql dlt'
# or '--rows 5000000' or '--skip-slow'; see bench/run_bench.py --help.
bench: $(BENCH_STAMP)  ## benchmarks (about 2.5 h in full, see BENCHMARKS.md; --quick: about 10 minutes)
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

bench-anomalies: $(STAMP)  ## peak RSS of an etl run finding 500k and 2M anomalies (about 10 minutes; not in `test`)
	$(BIN)/python bench/anomaly_bench.py $(BENCH_ARGS)

format: $(STAMP)
	$(BIN)/ruff format etl tests
	$(BIN)/ruff check --fix etl tests

clean:
	rm -rf $(VENV) etl-demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
