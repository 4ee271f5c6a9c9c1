# rapp-edge developer targets. The benchmarks write benchmarks/results/ (see benchmarks/run.py).
PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick

# Every benchmark and evaluation (~18 min on 2 idle cores); refreshes benchmarks/results/*.json,
# *.md, plots, SUMMARY.md and the README's Performance / Detection quality sections.
bench:
	nice -n 10 $(PYTHON) -m benchmarks.run --readme README.md

# CI smoke run (< 2 min on 2 cores): every harness on small settings, into a scratch folder,
# so the published results are not overwritten; asserts no speed.
BENCH_QUICK_OUT ?= /tmp/rapp-bench-quick
bench-quick:
	$(PYTHON) -m benchmarks.run --quick --out $(BENCH_QUICK_OUT)
