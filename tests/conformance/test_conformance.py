"""The core's public modules through the shared conformance checks (`suite.py`)."""

from tests.conformance import registry
from tests.conformance.suite import *  # noqa: F403 (the shared checks, run over ENTRIES)

ENTRIES = registry.ENTRIES
PUBLIC_MODULES = registry.public_module_classes()


def test_public_functions_returning_modules_are_covered():
    # Public functions returning modules (annotated so) may return private classes.
    unlisted = sorted(f.__name__ for f in registry.public_module_factories() - set(registry.FACTORIES))
    assert not unlisted, (
        f"public functions returning modules, without example arguments in registry.FACTORIES: {unlisted}"
    )
    covered = {e.cls for e in ENTRIES}
    returned = {f.__name__: type(make()) for f, make in registry.FACTORIES.items()}
    uncovered = sorted(f"{name} -> {cls.__name__}" for name, cls in returned.items() if cls not in covered)
    assert not uncovered, f"classes returned by public functions without a conformance entry: {uncovered}"
