"""Every Python file belongs to a Bazel target, and every test file is a py_test.

So `bazel test //...` runs what pytest runs, and a file that no glob() reaches (a new
folder without a BUILD line, say) fails here, in `make test`, rather than going unseen.

Bazel is not needed: the BUILD files and tools/pytest.bzl keep to the part of Starlark
that is also Python, so this test executes them as Python, with glob() reimplemented and
the rules recording their srcs. Under Bazel the check is skipped: a Bazel test sees only
the files its targets declare, which is exactly what it cannot check.
"""

import fnmatch
import os
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ("benchmarks", "core", "models", "tests", "tools")
BUILD_FILES = ("BUILD.bazel", "BUILD")  # Bazel's order of preference
TEST_FILES = ("test_*.py", "*_test.py")  # what pytest collects by default


def _is_package(root: str, rel: str) -> bool:
    return any(os.path.isfile(os.path.join(root, rel, name)) for name in BUILD_FILES)


def _ignored(root: str) -> set[str]:
    """The folders .bazelignore hides from Bazel, relative to the root."""
    path = os.path.join(root, ".bazelignore")
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        lines = (line.split("#")[0].strip().strip("/") for line in f)
        return {line for line in lines if line}


def _match(parts: list[str], pattern: list[str]) -> bool:
    """Bazel's glob matching: `*` stays within one path segment, `**` spans any number."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def _package_files(root: str, package: str, ignored: set[str]) -> list[str]:
    """The files of a package, relative to it: subpackages and ignored folders excluded."""
    files = []
    for folder, dirs, names in os.walk(os.path.join(root, package)):
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        dirs[:] = [
            d for d in dirs if f"{rel}/{d}".lstrip("/") not in ignored and not _is_package(root, os.path.join(rel, d))
        ]
        inside = os.path.relpath(folder, os.path.join(root, package)).replace(os.sep, "/")
        files += [n if inside == "." else f"{inside}/{n}" for n in names]
    return files


def _targets(root: str, package: str, ignored: set[str]) -> list[tuple[str, str]]:
    """(rule kind, path from the root) for every source of every rule in a package."""
    files = []  # listed on the first glob(): the root package may never call it

    def glob(include, exclude=(), **_):
        if not files:
            files.extend(_package_files(root, package, ignored))
        return sorted(
            f
            for f in files
            if any(_match(f.split("/"), p.split("/")) for p in include)
            and not any(_match(f.split("/"), p.split("/")) for p in exclude)
        )

    def path(label: str) -> str:
        """The file a source label names: "//pkg:f.py" is pkg/f.py; ":f.py" and "f.py" are here."""
        if label.startswith("//"):
            other, _, name = label[2:].partition(":")
            return f"{other}/{name}" if other else name
        return f"{package}/{label.lstrip(':')}".lstrip("/")

    sources = []

    def rule(kind):
        def record(name, srcs=(), **_):
            sources.extend((kind, path(s)) for s in srcs)

        return record

    names = {
        "glob": glob,
        "package_name": lambda: package,
        "py_library": rule("py_library"),
        "py_binary": rule("py_binary"),
        "py_test": rule("py_test"),
        # Rules that make no Python target, so their files count for nothing here.
        "exports_files": lambda *args, **kwargs: None,
        "filegroup": lambda **kwargs: None,
        "package": lambda **kwargs: None,
    }

    def load(label, *symbols):
        # BUILD files here load only this repository's .bzl files, which use `native`.
        bzl_package, _, bzl_file = label[2:].partition(":")
        bzl_scope = {"native": types.SimpleNamespace(**names)}
        _execute(os.path.join(root, bzl_package, bzl_file), bzl_scope)
        scope.update({symbol: bzl_scope[symbol] for symbol in symbols})

    scope = dict(names, load=load)
    build = next(n for n in BUILD_FILES if os.path.isfile(os.path.join(root, package, n)))
    _execute(os.path.join(root, package, build), scope)
    return sources


def _execute(path: str, scope: dict) -> None:
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), scope)


def uncovered(root: str, checked=CHECKED) -> tuple[list[str], list[str]]:
    """Python files in no target, and test files that are no py_test, relative to the root."""
    ignored = _ignored(root)
    packages, python_files = [], []
    if _is_package(root, ""):
        packages.append("")
    for top in checked:
        for folder, dirs, names in os.walk(os.path.join(root, top)):
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            dirs[:] = [d for d in dirs if d != "__pycache__" and f"{rel}/{d}" not in ignored]
            if _is_package(root, rel):
                packages.append(rel)
            python_files += [f"{rel}/{n}" for n in names if n.endswith(".py")]
    sources = [s for p in packages for s in _targets(root, p, ignored)]
    in_targets = {path for _, path in sources}
    tests = {path for kind, path in sources if kind == "py_test"}
    missing = sorted(f for f in python_files if f not in in_targets)
    not_tests = sorted(
        f
        for f in python_files
        if f.startswith("tests/")
        and any(fnmatch.fnmatchcase(os.path.basename(f), p) for p in TEST_FILES)
        and f not in tests
    )
    return missing, not_tests


skip_under_bazel = pytest.mark.skipif(
    "TEST_SRCDIR" in os.environ,
    reason="a Bazel test sees only declared files; this check runs under plain pytest",
)


@skip_under_bazel
def test_every_python_file_is_in_a_bazel_target():
    missing, not_tests = uncovered(ROOT)
    assert not missing, (
        "Python files in no Bazel target: add a BUILD file or a pytest_tests line in "
        f"tests/BUILD for their folder: {missing}"
    )
    assert not not_tests, f"test files Bazel would not run as tests: {not_tests}"


def _write(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_finds_files_no_glob_reaches(tmp_path):
    _write(
        tmp_path,
        {
            "lib/BUILD": 'py_library(name = "lib", srcs = glob(["*.py"]))\n',
            "lib/a.py": "",
            "lib/deeper/b.py": "",  # `*` does not reach into subfolders
            "lib/sub/BUILD": 'py_library(name = "sub", srcs = glob(["**/*.py"], exclude = ["x*"]))\n',
            "lib/sub/c/d.py": "",
            "lib/sub/x.py": "",
            "tests/BUILD": 'py_library(name = "helpers", srcs = ["test_e.py"])\n',
            "tests/test_e.py": "",  # in a target, but not as a test
            "orphan/f.py": "",  # no BUILD above it
        },
    )
    missing, not_tests = uncovered(str(tmp_path), checked=("lib", "orphan", "tests"))
    assert missing == ["lib/deeper/b.py", "lib/sub/x.py", "orphan/f.py"]
    assert not_tests == ["tests/test_e.py"]


def test_the_check_runs_the_project_macro(tmp_path):
    _write(
        tmp_path,
        {
            "tools/BUILD": "",
            "tools/pytest.bzl": open(os.path.join(ROOT, "tools", "pytest.bzl")).read(),
            "tests/BUILD": 'load("//tools:pytest.bzl", "pytest_tests")\npytest_tests("a")\n',
            "tests/a/__init__.py": "",
            "tests/a/test_x.py": "",
            "tests/a/y_test.py": "",
            "tests/b/test_z.py": "",  # a folder without its pytest_tests line
        },
    )
    missing, not_tests = uncovered(str(tmp_path), checked=("tests",))
    assert missing == ["tests/b/test_z.py"]
    assert not_tests == ["tests/b/test_z.py"]
