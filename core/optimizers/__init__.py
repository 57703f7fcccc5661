"""Optimizers as modules: `opt.apply(updates, parameters)` changes the parameters in place.

`SGD`, `Momentum`, `Adam` and `RMSProp` take Sonnet 2's arguments and compute its updates
number for number, dense and sparse (`tf.IndexedSlices`). Hyperparameters may be numbers,
`tf.Variable`s or `schedules` (callables of the step count). Under a multi-replica
strategy, all-reduce the gradients first (`core.distribute.all_reduce_gradients`) and build
the slots before the traced step (`opt.build(params)`); see `core.optimizers.base`.
"""

from core.optimizers import schedules
from core.optimizers.adam import Adam
from core.optimizers.base import DTypeMismatchError
from core.optimizers.momentum import Momentum
from core.optimizers.rmsprop import RMSProp
from core.optimizers.sgd import SGD

__all__ = [
    "SGD",
    "Momentum",
    "Adam",
    "RMSProp",
    "schedules",
    "DTypeMismatchError",
]
