# Everything runs inside a virtual environment made here (.venv), so the two
# quick-start commands work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Run the main demo experiment: tables and figures land in results/request_response/.
demo: $(STAMP)
	$(PY) -m commsim run experiments/request_response.yaml

## The default test suite (heavier validation runs are marked slow).
test: $(STAMP)
	$(PY) -m pytest -n 2 -q

## The slow validation runs, run before claiming a number.
test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info
