# Two commands set everything up on a fresh machine with Python 3:
#   make run    creates .venv, installs the project, runs the main job
#   make test   creates .venv, installs the project and test tools, runs the suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
RUN_ARGS ?=
BAZEL_ARGS ?=

.PHONY: run test test-onednn lint format bazel-test clean

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

# The benchmark harness at the quick preset; flags go through RUN_ARGS, e.g.
# make run RUN_ARGS="--preset paper" (see python -m benchmarks.run --help).
run: $(VENV)/.installed-bench
	$(PY) -m benchmarks.run $(RUN_ARGS)

# -n 2 lives here, not in the pytest configuration, so that
# `pytest benchmarks --benchmark-only` (which refuses xdist) keeps working.
test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

# The tests whose outcome depends on the CPU's kernels, layouts or allocator statistics
# (marked onednn) with oneDNN on; `make test` runs them with TensorFlow's default, which
# is off on many AMD CPUs. CI runs the suite with oneDNN off, then this.
test-onednn: $(VENV)/.installed-test
	TF_ENABLE_ONEDNN_OPTS=1 $(PY) -m pytest -n 2 -m onednn --durations=5 $(PYTEST_ARGS)

# The formatter and the linter (ruff; settings in pyproject.toml). `make format` rewrites.
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Bazel, for those who build with it: Debian's bazel-bootstrap (Bazel 4.2.3) if bazel is
# missing, then every test through Bazel. Tests run with the first python3 on PATH,
# hence the venv's bin first.
bazel-test: $(VENV)/.installed-test
	command -v bazel >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap >/dev/null; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bazel test //... $(BAZEL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
