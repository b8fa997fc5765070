# One entry point for the common tasks. `make test` is what CI runs.
PYTHON ?= python

.PHONY: test lint format docs bench bench-quick

test:
	$(PYTHON) -m pytest -q

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

docs:
	mkdocs build --strict

bench:
	$(PYTHON) benchmarks/compare.py

bench-quick:
	$(PYTHON) benchmarks/compare.py --quick
