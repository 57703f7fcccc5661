"""Test set-up for the models' tests: each model's tests see only that model's gin `train`.

Every `models/<name>/train.py` registers its settings as the gin configurable `train`,
so that its configs read `train.num_steps = ...`. A run imports one of them, but one
test process imports several, and gin then finds `train` ambiguous. While a test module under
`tests/models/<name>/` runs, the other models' `train` configurables are taken out of
gin's registry (and put back after it), as if each model ran in a process of its own.
"""

import gin.config
import pytest


def _train_selectors() -> list[str]:
    """Complete selectors of every registered configurable named `train`."""
    return list(gin.config._REGISTRY.matching_selectors("train"))


# Module-scoped, so that it is in force for module-scoped fixtures too (a reference run
# that several tests share): autouse fixtures come first within their scope.
@pytest.fixture(scope="module", autouse=True)
def _only_this_models_train_settings(request):
    registry = gin.config._REGISTRY
    own = f"models.{request.path.parent.name}."
    others = {s: registry.pop(s) for s in _train_selectors() if s.startswith("models.") and not s.startswith(own)}
    try:
        yield
    finally:
        for selector, configurable in others.items():
            registry[selector] = configurable
