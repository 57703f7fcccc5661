# Two commands set everything up on a fresh machine with Python 3:
#   make run    creates .venv, installs the project, runs the main job
#   make test   creates .venv, installs the project and test tools, runs the suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes; the stamp records which extras are in.
$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run

# -n 2 lives here, not in the pytest configuration, so that
# `pytest benchmarks --benchmark-only` (which refuses xdist) keeps working.
test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
