# One target per paper; every target sets up .venv by itself.
# GPU users: make TORCH="torch --index-url https://download.pytorch.org/whl/cu124" <target>
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
REPRO := $(VENV)/bin/repro
PAPERS := dqn_atari vae gan gran urnn elu irnn binaryconnect pearl bear siren nmf simclr_data
IMPLEMENTED = $(shell test -x $(REPRO) && $(REPRO) list | awk '$$2 == "implemented" {print $$1}')
WORKERS ?= 3

.PHONY: test smoke cpu check report $(PAPERS)

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(VENV)/bin/ruff check --select F,E9 common reproductions tests
	$(VENV)/bin/python -m pytest -q

smoke: $(VENV)/.installed
	for paper in $(IMPLEMENTED); do $(REPRO) run $$paper --tier smoke || exit 1; done
	$(REPRO) report

cpu: $(VENV)/.installed
	$(REPRO) sweep $(IMPLEMENTED) --tier cpu --workers $(WORKERS)
	$(REPRO) report

# run a paper's cpu seeds afresh on this machine (into local-results/) and print the verdicts beside the
# committed ones; `repro sweep <paper>` is how committed records are made
$(PAPERS): $(VENV)/.installed
	$(REPRO) reproduce $@ --tier cpu --workers $(WORKERS)

check: $(VENV)/.installed
	$(REPRO) check --tier cpu

report: $(VENV)/.installed
	$(REPRO) report
