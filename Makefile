# The two commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m peerbackup demo

lint: $(STAMP)
	$(PY) -m ruff check peerbackup tests
	$(PY) -m mypy peerbackup tests

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) tests/bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
