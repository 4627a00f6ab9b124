# Two commands on a fresh machine with Python 3.11+:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test clean

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

clean:
	rm -rf $(VENV) retouch-demo .pytest_cache .hypothesis
