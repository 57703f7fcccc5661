"""pytest_tests: Bazel targets for one folder of the pytest suite.

This file and the BUILD files that use it stay in the part of Starlark that is also
Python: tests/test_bazel.py evaluates them with Python to check that every Python file
belongs to a target.
"""

def pytest_tests(folder = "", deps = [], data = []):
    """One py_test per test file in `folder` (relative to the package), run by pytest.

    Test files are those pytest collects by default: test_*.py and *_test.py.

    All the folder's Python files (__init__.py, conftest.py, helpers, and the test files,
    which may import each other) form the library `<folder>/library`, with the folder's
    other files as data; every test of the folder depends on it. It depends on the
    parent folder's library, because pytest imports the __init__.py and conftest.py of
    every folder above a test file. Subfolders need a call of their own.

    Args:
      folder: the folder, relative to the package; "" for the package's own.
      deps: libraries the folder's tests and helpers import.
      data: further files they read at run time.
    """
    prefix = folder + "/" if folder else ""
    tests = native.glob([prefix + "test_*.py", prefix + "*_test.py"])
    if folder:
        deps = deps + [":" + _library(folder.rpartition("/")[0])]
    native.py_library(
        name = _library(folder),
        srcs = native.glob([prefix + "*.py"]),
        data = data + native.glob([prefix + "*"], exclude = [prefix + "*.py", prefix + "BUILD"]),
        deps = deps,
    )
    for test in tests:
        native.py_test(
            name = test[:-len(".py")],
            srcs = [test, "//tools:pytest_main.py"],
            main = "//tools:pytest_main.py",
            args = ["$(rootpath %s)" % test],
            deps = [":" + _library(folder)],
            # 15 minutes, not 5: on a busy two-core machine the longest files (the
            # conformance suite, DNC training) have come close to 5.
            timeout = "long",
        )

def _library(folder):
    return folder + "/library" if folder else "library"
