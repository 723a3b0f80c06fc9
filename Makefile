# pyostree: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
SUITE := ../shared/conformance/run-ostree-suite
CONFORMANCE_MIN := $(shell cat conformance/core-min 2>/dev/null || echo 0)

.PHONY: deps demo test lint typecheck unit conformance bench clean

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

conformance: deps
	@if [ -x $(SUITE) ]; then \
	  $(SUITE) --tier core --impl "$$(bash scripts/make-launcher.sh)" --timeout 900 \
	    --min $(CONFORMANCE_MIN) --logs .cache/conformance-logs; \
	else echo "conformance: $(SUITE) not found (needs ../shared beside the clone)"; fi

test: lint typecheck unit conformance

bench: deps
	$(PYTHON) bench/bench.py

clean:
	rm -rf .cache build *.egg-info .mypy_cache .ruff_cache .pytest_cache
