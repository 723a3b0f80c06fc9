# pyostree: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
SUITE := ../shared/conformance/run-ostree-suite

.PHONY: deps demo test lint typecheck unit conformance bench launcher clean torture

deps:
	@bash scripts/install-deps.sh

demo: deps
	@bash scripts/demo.sh

lint: deps
	$(PYTHON) -m ruff check src tests bench

typecheck: deps
	$(PYTHON) -m mypy

unit: deps
	$(PYTHON) -m pytest -q -ra

# The upstream suite, tier by tier; conformance/TIER-min holds the figure last
# reached, and a run below it fails (the count may never go down).
TIERS := core remote admin
conformance: deps
	@if [ ! -x $(SUITE) ]; then echo "conformance: $(SUITE) not found (needs ../shared beside the clone)"; exit 1; fi
	@impl=$$(bash scripts/make-launcher.sh); rc=0; \
	for t in $(TIERS); do \
	  min=$$(cat conformance/$$t-min 2>/dev/null || echo 0); \
	  echo "== conformance tier $$t (floor $$min)"; \
	  $(SUITE) --tier $$t --impl "$$impl" --timeout 900 --min $$min --logs .cache/conformance-logs/$$t \
	    || { echo "conformance: tier $$t fell below its floor of $$min"; rc=1; }; \
	done; exit $$rc

test: lint typecheck unit conformance

# The torture suite at full size (not part of `make test`, which runs a few trials of it):
# 100 kill -9 trials per writing operation (and the same against the real ostree), 10,000
# fuzz inputs per parser.  Bounded: TORTURE_TIMEOUT seconds in all; results (one JSON line
# per operation and tool) in .cache/torture-results.jsonl.
TORTURE_TIMEOUT ?= 14400
torture: deps
	rm -f .cache/torture-results.jsonl
	PYOSTREE_TORTURE=1 PYOSTREE_TORTURE_RESULTS=$(CURDIR)/.cache/torture-results.jsonl \
	  timeout $(TORTURE_TIMEOUT) $(PYTHON) -m pytest -q -s -m torture tests/test_torture_kill.py tests/test_torture_fuzz.py

bench: deps
	$(PYTHON) bench/bench.py

# A start-up-lean `pyostree` (python -ES, paths preset) in $(PREFIX)/bin.
PREFIX ?= /usr/local
launcher: deps
	@bash scripts/make-launcher.sh $(PREFIX)/bin/pyostree

clean:
	rm -rf .cache build *.egg-info .mypy_cache .ruff_cache .pytest_cache
