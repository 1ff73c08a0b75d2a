# Kanri: `make run` serves the portal with everything it needs; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SANDBOX_PORT ?= 8420

# The first interpreter that reports Python >= 3.12 (pyenv shims that cannot run are skipped).
PYTHON_CANDIDATES := python3.14 python3.13 python3.12 python3 python
PYTHON ?= $(shell for c in $(PYTHON_CANDIDATES); do \
	  command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 \
	  && { echo $$c; break; }; done)

.PHONY: help run test bench soak lint messages clean python

help:
	@echo "make run    serve Kanri on http://127.0.0.1:$(PORT)/ with worker, beat and the payment sandbox"
	@echo "make test   install the dev extra and run the whole test suite"
	@echo "make bench  page timings and query counts; with PostgreSQL, the sweeps at 100,000 subscriptions, payments through the sandbox against bare PaymentIntents and (with Redis) the API's authorize and every portal page under 50 clients"
	@echo "make soak   the books model at length (thousands of random steps; needs DATABASE_URL=postgres://...)"
	@echo "make lint   ruff"

python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "Kanri needs Python 3.12 or newer; none of '$(PYTHON_CANDIDATES)' is. Install one, or run 'make PYTHON=/path/to/python3.12 ...'." >&2; \
	  exit 1; fi

$(BIN)/python: | python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

run: export DEBUG ?= 1
run: export STRIPE_API_BASE ?= http://127.0.0.1:$(SANDBOX_PORT)
run: export KANRI_BASE_URL ?= http://127.0.0.1:$(PORT)
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py seed_catalog
	$(BIN)/python manage.py demo_data
	@echo
	@echo "  Kanri runs on http://127.0.0.1:$(PORT)/  (Ctrl-C stops web, worker, beat and the sandbox)"
	@echo
	PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) $(BIN)/honcho -f Procfile.dev start

test: export DEBUG ?= 1
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: export DEBUG ?= 1
bench: $(VENV)/.installed-dev
	$(BIN)/python tests/bench/pages.py
	$(BIN)/python tests/bench/sweeps.py
	$(BIN)/python tests/bench/api.py
	$(BIN)/python tests/bench/pages_load.py
	$(BIN)/python tests/bench/payments.py

# The books model (tests/billing/test_books_model.py) with many more examples than CI runs.
soak: export DEBUG ?= 1
soak: export KANRI_MODEL_EXAMPLES ?= 200
soak: export KANRI_MODEL_STEPS ?= 50
soak: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/billing/test_books_model.py -x

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# Regenerate the Japanese catalog after changing strings (needs GNU gettext).
messages: $(VENV)/.installed
	DEBUG=1 $(BIN)/python manage.py makemessages -l ja --ignore=.venv --ignore=var --ignore=tests
	DEBUG=1 $(BIN)/python manage.py compilemessages -l ja --ignore=.venv

clean:
	rm -rf var .pytest_cache
