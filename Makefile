# Targets say what they do. The venv is made on first use from the pinned constraints.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test setup lint typecheck bench clean

serve: $(STAMP)  ## start the service on the embedded PostgreSQL (./.rcc)
	$(BIN)/rcc serve

test: $(STAMP) setup lint typecheck  ## set-up, lint, type-check, then the whole suite (real PostgreSQL, started by the tests)
	$(BIN)/pytest -n 2 --dist loadgroup

setup:  ## what the suite needs besides the venv: Debian packages (as root), podman, npm
	bash scripts/setup

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src projections tests
	$(BIN)/ruff format --check src projections tests

typecheck: $(STAMP)  ## mypy strict on src/
	$(BIN)/mypy

bench: $(STAMP)  ## the ledger benchmark (figures go in docs/BENCHMARKS.md)
	$(BIN)/rcc bench ledger

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

clean:  ## remove the venv and the local data directory
	rm -rf $(VENV) .rcc
