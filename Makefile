# Developer shortcuts. CI runs .ci/run; the benchmark is never run by CI or pytest.
PYTHON ?= .venv/bin/python

.PHONY: test lint bench

test:
	$(PYTHON) -m pytest -q

lint:
	.venv/bin/ruff check .

# Performance figures against real local servers; writes docs/benchmarks.md (add ARGS=--quick for a check).
bench:
	$(PYTHON) -m scripts.bench $(ARGS)
