# Every target installs into .venv first if it has to; a fresh machine needs only Python 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
STAMP := $(VENV)/.installed

.PHONY: help setup demo test mutants bench lint clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

# The demo needs only the connector itself (about 30 s to install); tests and DAGs need the test tools and Airflow
# (a few minutes more).
$(CORE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,airflow]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its test dependencies

demo: $(CORE_STAMP)  ## start the local sandbox, run configs/demo/*.yaml against it, print what happened
	$(BIN)/python scripts/demo.py

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest -q

mutants: $(STAMP)  ## break guarantee-critical code on purpose, one mutant at a time, and check a test sees each (MUTANTS="M1 R2" for some)
	$(BIN)/python scripts/mutants.py $(MUTANTS)

bench: $(STAMP)  ## run the benchmarks in bench/ and print their figures (BENCH_ARGS=--quick for a short run)
	$(BIN)/python -c "import pandas" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)  ## ruff, when installed
	$(BIN)/python -m ruff check pipeline tests || true

clean:  ## remove outputs and the virtualenv
	rm -rf out $(VENV) .pytest_cache
