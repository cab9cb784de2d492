# One command for the job, one for the tests; both set up .venv first (a second run skips it).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test test-fast lint bench clean

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

# tests/test_report.py opens the HTML report in a headless Chromium (Debian's package; needs root to
# install). Elsewhere that one test skips and says so; on CI (CI set) a failed install stops make test.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
	  { [ -z "$$CI" ] && echo "chromium not installed: tests/test_report.py's browser test will skip"; }

test: $(STAMP) browser
	$(PY) -m pytest -q --durations=15

# the edit-test loop: no Ray, no subprocess, no browser (tests marked ray or slow are left out)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not ray and not slow" --durations=5

lint: $(STAMP)
	$(VENV)/bin/ruff check forecaster jobs tests bench

bench: $(STAMP)
	$(PY) bench/throughput.py
	$(PY) bench/accuracy.py

clean:
	rm -rf out .pytest_cache
