"""Entry point of every py_test: runs the test file given as argument with pytest.

The suite is written for pytest (fixtures from tests/conftest.py, markers and warning
filters from pyproject.toml), so a Bazel test runs `pytest <file>` as `make test` would.
"""

import importlib.util
import os
import sys


def _drop_editable_install() -> None:
    """Stops imports of core, models and benchmarks falling back to the working tree.

    `pip install -e .` puts a finder for the working tree into every interpreter of the
    venv. Without it, a test sees only the files its targets declare, so a missing
    Bazel dependency fails here instead of passing by accident.
    """
    sys.meta_path[:] = [
        finder for finder in sys.meta_path if not getattr(finder, "__module__", "").startswith("__editable__")
    ]


def main(argv: list[str]) -> int:
    if importlib.util.find_spec("tensorflow") is None:
        sys.exit(
            f"{sys.executable} cannot import tensorflow. Bazel runs tests with the first "
            "python3 on PATH: put the venv's bin first (`make bazel-test` does)."
        )
    _drop_editable_install()
    import pytest

    args = list(argv) + ["-p", "no:cacheprovider"]  # the runfiles tree is read-only
    env = os.environ
    if "TEST_TMPDIR" in env:  # Bazel's per-test scratch space
        args.append("--basetemp=" + os.path.join(env["TEST_TMPDIR"], "pytest"))
    if "XML_OUTPUT_FILE" in env:  # per-case results for Bazel's test report
        args.append("--junitxml=" + env["XML_OUTPUT_FILE"])
    if "TESTBRIDGE_TEST_ONLY" in env:  # bazel test --test_filter=EXPR means pytest -k EXPR
        args += ["-k", env["TESTBRIDGE_TEST_ONLY"]]
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
