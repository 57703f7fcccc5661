"""The conformance registry: every public module, with a small constructor and input.

Each entry is run through the shared tests in `test_conformance.py` (eager vs
tf.function vs XLA, checkpoints, SavedModel, MirroredStrategy, deepcopy, variable
names). Covering a new module takes one `Entry(...)` line here; `test_registry_is_complete`
fails while a public module class has none.

Inputs are NumPy arrays drawn from a generator the test passes in, so each replica of a
multi-replica test gets different data.
"""

import dataclasses
from typing import Any, Callable

import numpy as np
import tensorflow as tf

import core

Inputs = tuple
Forward = Callable[[tf.Module, Inputs, bool], Any]


def call(module: tf.Module, inputs: Inputs, is_training: bool) -> Any:
    """Calls a module that takes no `is_training` argument."""
    del is_training
    return module(*inputs)


def call_training(module: tf.Module, inputs: Inputs, is_training: bool) -> Any:
    """Calls a module that takes `is_training` as a keyword argument."""
    return module(*inputs, is_training=is_training)


def normal(*shape: int) -> Callable[[np.random.RandomState], Inputs]:
    """Inputs: one float32 array of standard normals of the given shape."""
    return lambda rng: (rng.normal(size=shape).astype(np.float32),)


@dataclasses.dataclass(frozen=True)
class Entry:
    """How to build and call one public module in the shared tests.

    Attributes:
      name: unique id of the entry (test ids, the variable-name list).
      cls: the public class the entry covers.
      make: builds a fresh instance.
      inputs: draws the positional inputs (nested NumPy arrays) from a generator.
      forward: runs the module; `is_training=False` must be deterministic.
      updates_itself: the forward pass applies its own parameter update (optimizer
        entries), so the multi-replica test runs it rather than an outer SGD step.
      skip: shared tests this entry opts out of, mapped to the reason.
      rtol: tolerance of eager vs tf.function vs XLA agreement.
    """

    name: str
    cls: type
    make: Callable[[], tf.Module]
    inputs: Callable[[np.random.RandomState], Inputs]
    forward: Forward = call
    updates_itself: bool = False
    skip: dict[str, str] = dataclasses.field(default_factory=dict)
    rtol: float = 1e-5


ENTRIES: list[Entry] = [
    # --- linear -------------------------------------------------------------------
    Entry("Linear", core.Linear, lambda: core.Linear(3), normal(2, 4)),
    Entry("Linear_nobias_rank3", core.Linear, lambda: core.Linear(3, with_bias=False), normal(2, 3, 4)),
    # --- conv, conv_transpose, embed, dropout, sequential, batch_apply, reshape ----
    # --- batch_norm, moving_averages --------------------------------------------------
    # --- layer_norm, attention, spectral_norm, nets -----------------------------------
    # --- recurrent ------------------------------------------------------------------
    # --- optimizers -------------------------------------------------------------------
]

# Abstract bases and the base class itself have no entry of their own.
NOT_CONCRETE = {core.Module}


def public_module_classes() -> set[type]:
    """Every concrete `core.Module` subclass reachable from core's public API."""
    found = set()
    namespaces = [core] + [getattr(core, n) for n in core.__all__ if isinstance(getattr(core, n), type(core))]
    for ns in namespaces:
        for name in getattr(ns, "__all__", []):
            obj = getattr(ns, name)
            if isinstance(obj, type) and issubclass(obj, core.Module):
                found.add(obj)
    return {c for c in found if c not in NOT_CONCRETE and not getattr(c, "__abstractmethods__", None)}
