# Developer shortcuts. CI runs .ci/run; the benchmark is never run by CI or pytest.
PYTHON ?= .venv/bin/python

.PHONY: test lint bench fuzz

test:
	$(PYTHON) -m pytest -q

lint:
	.venv/bin/ruff check .

# Performance figures against real local servers; writes docs/benchmarks.md (add ARGS=--quick for a check).
bench:
	$(PYTHON) -m scripts.bench $(ARGS)

# The parser and card-renderer fuzz tests with 20x the CI budget (60,000 mutated emails, 20,000 cards).
fuzz:
	FUZZ_SCALE=20 $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_parse.py tests/test_board.py -k "mutated or any_text"
