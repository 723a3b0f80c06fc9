# pyostree: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
SUITE := ../shared/conformance/run-ostree-suite

.PHONY: deps demo test lint typecheck unit conformance bench launcher clean

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

bench: deps
	$(PYTHON) bench/bench.py

# A start-up-lean `pyostree` (python -ES, paths preset) in $(PREFIX)/bin.
PREFIX ?= /usr/local
launcher: deps
	@bash scripts/make-launcher.sh $(PREFIX)/bin/pyostree

clean:
	rm -rf .cache build *.egg-info .mypy_cache .ruff_cache .pytest_cache
