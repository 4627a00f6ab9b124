# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
# The benchmark table (minutes; rewrites the README's performance table):  make bench
# The reliability table (full sizes, minutes; rewrites RELIABILITY.md):  make reliability
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench reliability clean

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

# Imagen's official SDK, for the side-by-side figure: its own venv, never retouch's. Without a
# network the row says "n/a" and the rest of the table is unaffected.
.venv-sdk/bin/python:
	$(PYTHON) -m venv .venv-sdk
	.venv-sdk/bin/python -m pip install --quiet imagen-ai-sdk || echo "imagen-ai-sdk not installed: its column will say n/a"

bench: setup .venv-sdk/bin/python
	$(BIN)/python bench/run.py --readme README.md

reliability: setup
	$(BIN)/python bench/reliability.py --report RELIABILITY.md

clean:
	rm -rf $(VENV) .venv-sdk retouch-demo .pytest_cache .hypothesis
