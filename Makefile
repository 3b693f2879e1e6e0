# Branchline developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

PYTEST_ARGS ?=
ifeq ($(FAST),1)
PYTEST_MARK := -m "not slow"
else
PYTEST_MARK :=
endif

.PHONY: setup run test lint typecheck pytest bench clean

setup:
	bash scripts/setup.sh

run: setup
	$(PY) -m controller.demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy appliance controller hw

typecheck: setup
	$(VENV)/bin/mypy appliance controller hw

pytest: setup
	$(PY) -m pytest $(PYTEST_MARK) $(PYTEST_ARGS)

# Runs every stage even when an earlier one fails (one CI run shows all problems), and
# fails if any stage failed.
test: setup
	@rc=0; \
	echo "== ruff check ."; $(VENV)/bin/ruff check . || rc=1; \
	echo "== mypy appliance controller hw"; $(VENV)/bin/mypy appliance controller hw || rc=1; \
	echo "== pytest $(PYTEST_MARK) $(PYTEST_ARGS)"; \
	$(PY) -m pytest $(PYTEST_MARK) $(PYTEST_ARGS) || rc=1; \
	exit $$rc

bench: setup
	@if [ -f bench/__main__.py ]; then \
		$(PY) -m bench; \
	else \
		echo "bench: bench/__main__.py does not exist yet, nothing to run"; \
	fi

clean:
	rm -rf run/tests .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
