# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow bench clean

$(BIN)/adf-service: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

setup: $(BIN)/adf-service

demo: setup
	$(BIN)/adf-service local-job examples/grid-smoke.yaml

test: setup
	$(BIN)/ruff check adf_service trials api tests bench
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python bench/supernet.py

clean:
	rm -rf $(VENV) runs .pytest_cache
