# The README's two commands: `make run` and `make test`. Everything else here serves them.
VENV ?= .venv
PYTHON ?= python3
CLI := $(VENV)/bin/citizen-context
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.bench-installed
BENCH_FLAGS ?=

.PHONY: run test check bench install clean

## run: from a fresh clone to a working product (servers, API, consumer, demo events); Ctrl-C stops it
run: $(INSTALLED)
	$(CLI) dev

## test: lint, types and the tests against real Redis, Kafka and PostgreSQL; stops the servers it started
test: $(INSTALLED)
	$(CLI) services tools
	CITIZEN_CONTEXT_SERVICES_WITH_POSTGRES=1 $(CLI) services run -- $(MAKE) --no-print-directory check

## check: what `make test` runs once the servers are up
check: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

## bench: the benchmark suite (starts the servers it needs); `make bench BENCH_FLAGS=--quick` for a short run
## (only a whole run replaces docs/bench: a run with flags prints its figures and reports under .data/bench)
bench: $(INSTALLED) $(BENCH_INSTALLED)
	$(CLI) bench $(if $(BENCH_FLAGS),,--json docs/bench/results.json) $(BENCH_FLAGS)

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --editable ".[dev]"
	touch $@

$(BENCH_INSTALLED): pyproject.toml
	$(VENV)/bin/pip install --quiet --editable ".[dev,bench]"
	touch $@

## clean: remove the virtualenv and the local servers' data (the Kafka jar cache is kept)
clean:
	# The servers' data goes only once they are stopped (a server left running would lose its files).
	if [ -x $(CLI) ]; then $(CLI) services down; fi
	rm -rf $(VENV) .data
