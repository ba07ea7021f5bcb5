# The two commands of the README: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Where PYTHONDONTWRITEBYTECODE is set (this machine sets it), an editable install is compiled from source
# by every process: each daemon, CLI call and test worker. Unset, the first one writes __pycache__ and
# the rest read it (a third of a daemon's start, a quarter of a CLI call).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run one-peer demo test lint bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The demo office: three daemons under ./.run/demo backing up a sample folder every minute; Ctrl-C stops them.
run: $(STAMP)
	$(PY) -m peerbackup demo --dir .run/demo

# A one-peer office in ./.run/home (initialised once), its daemon in the foreground.
one-peer: $(STAMP)
	$(PY) -m peerbackup.cli.quickstart .run

# The backup engine alone on a generated tree: backup, change, backup, diff, restore, check.
demo: $(STAMP)
	$(PY) -m peerbackup.cli.demo .demo

lint: $(STAMP)
	$(PY) -m ruff check peerbackup tests
	$(PY) -m mypy peerbackup tests
	$(VENV)/bin/lint-imports

# The suite's system packages (iproute2, faketime, nftables, chromium, restic) are installed when missing: .ci/system-deps.
# TEST_JOBS worker processes take the tests one at a time, the longest first (tests/timing.py); the tests
# with real daemons wait on them and on timers, so more workers than cores pays (6 on 2 cores: about 4.5 minutes).
# TEST_JOBS=0 runs them in this process.
# TEST_ARGS for pytest: TEST_ARGS='-m "not slow"' leaves out every test that starts a process (tests/processes.py).
TEST_JOBS ?= 6
TEST_ARGS ?=
test: lint
	./.ci/system-deps
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder $(TEST_ARGS)

# BENCH_ARGS for bench.py (against restic and borg), PEER_BENCH_ARGS for peer_bench.py (the peer store).
bench: $(STAMP)
	$(PY) tests/bench/bench.py $(BENCH_ARGS)
	$(PY) tests/bench/peer_bench.py $(PEER_BENCH_ARGS)

# The seeded chaos soak of a five-daemon office (docs/reliability.md); as root, with nft (.ci/system-deps).
# Its record goes to .run/soak/seedN.json; exit 1 when an invariant is broken.
SEED ?= 1
MINUTES ?= 20
TIMINGS ?= default
soak: $(STAMP)
	./.ci/system-deps
	$(PY) -m tests.soak.soak --seed $(SEED) --minutes $(MINUTES) --timings $(TIMINGS) --json .run/soak/seed$(SEED).json

clean:
	rm -rf $(VENV) build *.egg-info
