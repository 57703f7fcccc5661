"""Test set-up for the models' tests: each model's tests see only that model's gin `train`.

Every `models/<name>/train.py` registers its settings as the gin configurable `train`,
so that its configs read `train.num_steps = ...`. A run imports one of them, but one
test process imports several, and gin then finds `train` ambiguous. While a test under
`tests/models/<name>/` runs, the other models' `train` configurables are taken out of
gin's registry (and put back after it), as if each model ran in a process of its own.
"""

import gin.config
import pytest


def _train_selectors() -> list[str]:
    """Complete selectors of every registered configurable named `train`."""
    return list(gin.config._REGISTRY.matching_selectors("train"))


@pytest.fixture(autouse=True)
def _only_this_models_train_settings(request):
    registry = gin.config._REGISTRY
    own = f"models.{request.path.parent.name}."
    others = {s: registry.pop(s) for s in _train_selectors() if s.startswith("models.") and not s.startswith(own)}
    try:
        yield
    finally:
        for selector, configurable in others.items():
            registry[selector] = configurable
