# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
# The benchmark table (minutes; rewrites the table in docs/performance.md):  make bench
# The engineering documentation (docs/, built into site/ with MkDocs):  make docs
# The reliability table (full sizes, minutes; rewrites RELIABILITY.md):  make reliability
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast test-unit test-integration test-e2e lint bench reliability docs clean

$(BIN)/retouch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/retouch

setup: $(BIN)/retouch

demo: setup
	$(BIN)/retouch demo

test: setup
	$(BIN)/python -m pytest -q

# The tests by kind (docs/development.md): unit (pure: no sockets, no subprocess), integration (the sandboxes
# over loopback), e2e (the CLI and the daemon as real processes). test-fast: the unit tests, stopping at the
# first failure, for the inner loop.
test-fast: setup
	$(BIN)/python -m pytest -q -x tests/unit

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

test-integration: setup
	$(BIN)/python -m pytest -q tests/integration

test-e2e: setup
	$(BIN)/python -m pytest -q tests/e2e

# Errors (ruff), the type checker (mypy), the rooms' import contracts (import-linter) and the formatter's
# check (ruff format): each one runs, and the target fails if any of them failed. The installed package
# maps retouch.sync -> sync/ and so on, which mypy and import-linter cannot follow: they read a folder of
# links with the installed names.
lint: setup
	$(BIN)/python -m pip install --quiet -e ".[lint]"
	root=$$(mktemp -d) && mkdir $$root/retouch && for room in plugin sync storage; do \
	    ln -s "$(CURDIR)/$$room" $$root/retouch/$$room; done; touch $$root/retouch/__init__.py; status=0; \
	    $(BIN)/ruff check . || status=1; \
	    (cd $$root && MYPYPATH=$$root $(abspath $(BIN))/mypy --config-file "$(CURDIR)/pyproject.toml" \
	        --cache-dir "$(CURDIR)/.mypy_cache" -p retouch) || status=1; \
	    PYTHONPATH=$$root $(BIN)/lint-imports --config pyproject.toml || status=1; \
	    $(BIN)/ruff format --check . || status=1; \
	    rm -rf $$root; exit $$status

# Imagen's official SDK, for the side-by-side figure: its own venv, never retouch's. Without a
# network the row says "n/a" and the rest of the table is unaffected.
.venv-sdk/bin/python:
	$(PYTHON) -m venv .venv-sdk
	.venv-sdk/bin/python -m pip install --quiet imagen-ai-sdk || echo "imagen-ai-sdk not installed: its column will say n/a"

bench: setup .venv-sdk/bin/python
	$(BIN)/python bench/run.py --doc docs/performance.md

reliability: setup
	$(BIN)/python bench/reliability.py --report RELIABILITY.md

# --strict: a broken link or a page missing from the nav fails the build.
docs: setup
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) .venv-sdk retouch-demo .pytest_cache .hypothesis .mypy_cache site
