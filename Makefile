# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FAST := not ray and not service and not postgres

.PHONY: setup demo test test-fast test-slow test-cluster test-faults bench clean

# What pip cannot install: Python >= 3.11 with venv (Debian/Ubuntu: python3-venv), and a C
# compiler with Python's headers for the one dependency pip builds from source (hpbandster's
# netifaces: no wheel for 3.11). PostgreSQL for the job-store tests comes with the `test` extra.
$(BIN)/adf-service: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "make: $(PYTHON) is older than 3.11 (set PYTHON=python3.11)" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ echo "make: $(PYTHON) has no venv (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]' || \
		{ echo "make: pip install failed; netifaces builds from source and needs a C compiler and" \
		"Python's headers (Debian/Ubuntu: apt-get install gcc python3-dev)" >&2; exit 1; }
	touch $@

setup: $(BIN)/adf-service

demo: setup
	$(BIN)/adf-service local-job examples/grid-smoke.yaml

test: setup
	$(BIN)/ruff check adf_service trials api tests bench
	$(BIN)/python -m pytest -q

# The inner loop: no Ray, no server, no PostgreSQL (markers: tests/helpers/markers.py).
test-fast: setup
	$(BIN)/python -m pytest -q -m '$(FAST)'

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# Kill-and-recover tests (issue 16): a Ray head replaced, drivers and servers killed, a full disk,
# and the seeded fault schedule (20 kills by pid, about 7 minutes).
test-faults: setup
	$(BIN)/python -m pytest -q -m faults

# A head and two fake-GPU workers as separate `ray start` processes under `adf-service serve`.
test-cluster: setup
	$(BIN)/python -m pytest -q -m cluster

bench: setup
	$(BIN)/python bench/supernet.py

clean:
	rm -rf $(VENV) runs .pytest_cache
