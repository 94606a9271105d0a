# booking-etl: every target sets up the virtualenv it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test soak lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the demo end to end on embedded defaults (SQLite source, SQLite store, local Parquet)
	$(BIN)/etl demo etl-demo

test: $(STAMP)  ## run the test suite (real PostgreSQL/MariaDB where they answer)
	$(BIN)/python -m pytest

soak: $(STAMP)  ## 3 workers x 20 jobs for SOAK_SECONDS (default 300) on PostgreSQL, MariaDB and S3 (moto); not in `test`
	ETL_REQUIRE_DBS=1 $(BIN)/python -m pytest tests/soak.py -s -q --basetemp=/tmp/booking-etl-soak

lint: $(STAMP)  ## ruff lint + format check, mypy on etl/
	$(BIN)/ruff check etl tests bench
	$(BIN)/ruff format --check etl tests bench
	$(BIN)/mypy

bench: $(STAMP)  ## benchmarks (minutes; results go into BENCHMARKS.md by hand)
	$(BIN)/python bench/fold_bench.py --rows 1000000 5000000
	$(BIN)/python bench/extract_bench.py --rows 1000000 5000000

format: $(STAMP)
	$(BIN)/ruff format etl tests
	$(BIN)/ruff check --fix etl tests

clean:
	rm -rf $(VENV) etl-demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
