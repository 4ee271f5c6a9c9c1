PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick test test-fast lint

# rapp-edge developer targets. `./scripts/test.sh` (what CI runs) installs everything first;
# these use the .venv it made, for the inner loop.
# test-fast: unit tests only (< 1 min); test: the whole suite; lint: ruff, as CI runs it.
test-fast:
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow" tests/unit

test:
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# The benchmarks write benchmarks/results/ (see benchmarks/run.py).

# Every benchmark and evaluation (~1 h on 2 idle cores); refreshes benchmarks/results/*.json,
# *.md, plots, SUMMARY.md and the README's Performance / Detection quality sections.
bench:
	nice -n 10 $(PYTHON) -m benchmarks.run --readme README.md

# CI smoke run (< 2 min on 2 cores): every harness on small settings, into a scratch folder,
# so the published results are not overwritten; asserts no speed.
BENCH_QUICK_OUT ?= /tmp/rapp-bench-quick
bench-quick:
	$(PYTHON) -m benchmarks.run --quick --out $(BENCH_QUICK_OUT)
