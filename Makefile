# One command for the job, one for the tests; both set up .venv first (a second run skips it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: on these machines that exact CPU wheel is on local disk
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	# each demo trains afresh: the same run date would resume the last demo's Ray Train run
	rm -rf out/demo/checkpoints
	$(VENV)/bin/forecaster run --config configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check forecaster jobs tests bench

bench: $(STAMP)
	$(PY) bench/throughput.py
	$(PY) bench/accuracy.py

clean:
	rm -rf out .pytest_cache
