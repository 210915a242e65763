# taptill: set-up, demo, tests, lint and benchmarks. Everything runs from a fresh clone.
# The venv is built on Debian's /usr/bin/python3 where there is one, as provisioning builds the terminal's on a
# Pi: the suite then tests, and `make bench` measures, the interpreter the field runs (Raspberry Pi OS's, an
# optimised build), not whichever python3 comes first on PATH (a pyenv build here: 3.11.7, 7-20 % slower).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
STAMP := .make
# The suite waits much of its time (subprocesses, loopback servers with latency), so it runs in more
# pytest-xdist workers than a 2-core machine has cores; tests that must not overlap are grouped in
# tests/conftest.py. Serially it keeps about 0.8 of a core busy: a 4th worker only adds contention.
# TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 3

# Debian packages: the demo needs a venv, a compiler (spidev/pyscard build from source) and the sqlite3
# tool (`taptill recover` and a terminal starting on a damaged journal salvage its sales with it);
# the tests also run a real pcscd with the vpcd virtual reader and systemd-analyze, run the unit's ExecStart
# in its sandbox with unshare/setpriv (util-linux) and mount, and provision a UART reader (nfcpy: libusb).
# prometheus: for promtool, which checks the scraped metrics and the alert rules (Debian ships promtool
# only with the server, ~96 MB; where systemd runs, the package enables prometheus.service on :9090).
DEMO_DEBS := python3-venv python3-dev gcc sqlite3
TEST_DEBS := $(DEMO_DEBS) faketime pcscd libpcsclite-dev vsmartcard-vpcd systemd make e2fsprogs util-linux mount \
	libusb-1.0-0 prometheus

.PHONY: demo test lint bench mutate run clean system-deps-demo system-deps-test constraints report-docs

demo: $(STAMP)/venv-demo
	$(PY) -m terminal demo

test: $(STAMP)/venv-test lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)/venv-test
	$(VENV)/bin/ruff check terminal hw provisioning tests
	$(VENV)/bin/ruff format --check terminal hw provisioning tests
	$(VENV)/bin/mypy

bench: $(STAMP)/venv-test
	$(PY) -m terminal.bench

# The README's example shift report and chart (docs/), from the scripted shift its test runs.
report-docs: $(STAMP)/venv-test
	REPORT_DOCS=docs $(PY) -m pytest -q -p no:cacheprovider tests/test_report_run.py

# Mutation testing of the money path (tests/mutation/targets.py: each module with its tests), smallest
# module first; MODULE=terminal/outbox/schedule.py runs one. Long (see README), so not part of `make test`.
# One worker by default: mutmut's workers each run pytest, and other work shares the machine.
MUTATE_WORKERS ?= 1
mutate: $(STAMP)/venv-mutate
	$(PY) -m tests.mutation --workers $(MUTATE_WORKERS) $(MODULE)

# The versions the tests passed with, which taptill-provision installs on a terminal (pip -c). Run after
# `make test` passed on a changed venv; a wheel from a local file is pinned by its version.
constraints: $(STAMP)/venv-test
	{ sed -n '1,2p' provisioning/constraints.txt; $(PY) -m pip freeze --exclude-editable --disable-pip-version-check \
		| grep -v '^taptill' | sed -E 's/^([A-Za-z0-9_.-]+) @ .*\/[A-Za-z0-9_.]+-([0-9][^-]*)-.*$$/\1==\2/'; } \
		> provisioning/constraints.txt.new && mv provisioning/constraints.txt.new provisioning/constraints.txt

$(STAMP):
	mkdir -p $(STAMP)

system-deps-demo: | $(STAMP)
	@DEBS="$(DEMO_DEBS)" sh provisioning/ensure-debs.sh

system-deps-test: | $(STAMP)
	@DEBS="$(TEST_DEBS)" sh provisioning/ensure-debs.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP)/venv-demo: pyproject.toml | system-deps-demo $(VENV)/bin/python
	$(PIP) install -e '.[emulator]'
	touch $@

$(STAMP)/venv-test: pyproject.toml | system-deps-test $(VENV)/bin/python
	$(PIP) install -e '.[dev]'
	touch $@ $(STAMP)/venv-demo

$(STAMP)/venv-mutate: pyproject.toml | system-deps-test $(VENV)/bin/python
	$(PIP) install -e '.[mutate]'
	touch $@ $(STAMP)/venv-test $(STAMP)/venv-demo

clean:
	rm -rf $(VENV) $(STAMP) demo-out build/mutation
