"""What every optimizer shares: input checks, the step counter, slots and hyperparameters.

An optimizer with slots (per-parameter state such as Adam's moments) serves one fixed
list of parameters. The slots are made for that list on the first `apply`, or earlier by
`build`, and the list is remembered, so a later call with another list is an error
rather than a silent mix-up of slots. `SGD`, which has no slots, takes any list on every
call, as Sonnet's does: one SGD may train a GAN's generator and discriminator in turn
(with a schedule, its step counter counts every `apply`, whichever list it was given).

`copy.deepcopy` of an optimizer copies its slots and step counter, not the parameters
(they belong to the model): the copy serves the same parameters, unless they are copied
in the same `deepcopy` call, as in `copy.deepcopy((model, optimizer))` or the copy of a
module holding both; then the copy serves the copied parameters.

Float16 and bfloat16 parameters are updated in float32 arithmetic, with every scalar
(the bias corrections, 1 - beta, ...) computed in float32: 0.999 is 1 in bfloat16, which
would make Adam's second-moment correction 0 and its step NaN. Slots keep the
parameter's dtype, as in Sonnet.

Hyperparameters (the learning rate, Adam's betas, ...) may each be:
- a Python number, fixed;
- a `tf.Variable` (or tensor), read at every step, so assigning to the variable changes
  the next step;
- a schedule: any callable of the step count (an int64 scalar tensor holding the number
  of `apply` calls made before this one, 0 on the first) that returns the value, such as
  those in `core.optimizers.schedules`.

Multi-replica training. The step all-reduces gradients first
(`core.distribute.all_reduce_gradients`), so every replica applies the same update and
the slots and the step counter stay identical without communication; they are made with
`core.distribute.state_variable(..., aggregation="none")` (the policy table in
core/distribute.py). TensorFlow cannot create variables in the first trace of a
`tf.function` that also all-reduces, so build the slots before the traced step: call
`opt.build(params)` (or one eager `apply`) under the strategy, e.g. inside
`strategy.run` or `strategy.scope()`.
"""

import contextlib
import copy
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from core import distribute, utils
from core.module import Module, once

Update = tf.Tensor | tf.IndexedSlices | None
Hyperparameter = float | tf.Variable | tf.Tensor | Callable[[tf.Tensor], Any]

# The parameter list the slots were built for. Kept in `__dict__` under a key that
# `tf.Module` neither tracks nor flattens, so the parameters do not become the
# optimizer's own variables (or checkpoint dependencies).
_BUILT_FOR = "_core_optimizer_parameters"
# One tuple of slot variables per parameter, for a quick lookup on the hot path; None for
# an optimizer without slots, which takes any list of parameters.
_SLOTS_BY_PARAMETER = "_core_optimizer_slots"


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype an update of a `dtype` parameter is computed in: float32 for half precision."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def cast(value: Any, dtype: tf.DType) -> Any:
    """`value` (a tensor or variable) as `dtype`; unchanged, not even read, when it already is."""
    return value if value.dtype == dtype else tf.cast(value, dtype)


class _CopiedParameters:
    """The parameters of an optimizer made by `copy.deepcopy`, resolved on first use.

    The parameters belong to the model, so the copy serves the original ones unless the
    same `deepcopy` call copied them too; its memo maps each original to its copy. The
    lookup waits until the copy is used, because the parameters may be copied after the
    optimizer within that call (a module holding the optimizer first, say).
    """

    def __init__(self, parameters: tuple, memo: dict):
        self.parameters = parameters
        self.memo = memo

    def resolve(self) -> tuple:
        return tuple(self.memo.get(id(p), p) for p in self.parameters)


def is_schedule(value: Any) -> bool:
    """Whether a hyperparameter is a schedule (a callable of the step count)."""
    return callable(value) and not isinstance(value, (tf.Variable, tf.Tensor))


def check_hyperparameter(
    module: tf.Module,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    high_open: bool = False,
) -> None:
    """Raises unless `value` is a number in range, a variable, a tensor or a schedule.

    Only Python numbers are range-checked; variables and schedules are the user's.
    """
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or isinstance(value, (tf.Variable, tf.Tensor)) or is_schedule(value)
    ):
        raise TypeError(
            f"{utils.describe(module)}: {name} must be a number, a tf.Variable, a tensor or a "
            f"schedule (a callable of the step), got {value!r}"
        )
    if not isinstance(value, numbers.Real):
        return
    above = low is None or value >= low
    below = high is None or (value < high if high_open else value <= high)
    if not math.isfinite(value) or not above or not below:
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}{')' if high_open else ']'}"
        raise ValueError(f"{utils.describe(module)}: {name} must be in {bounds}, got {value!r}")


def deduplicate(update: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
    """Sums the rows of `update` that share an index: returns (summed rows, unique indices).

    The stateful optimizers read and write each touched row of a slot once, so repeated
    indices (a word used twice in a batch) must be merged first.
    """
    indices, positions = tf.unique(update.indices)
    summed = tf.math.unsorted_segment_sum(update.values, positions, tf.shape(indices)[0])
    return summed, indices


def gather_rows(variable: tf.Variable, indices: tf.Tensor) -> tf.Tensor:
    """Reads only the rows `indices` of a slot or parameter, as `sparse_read` does.

    Mirrored variables have no `sparse_read`; inside a replica their `handle` is the
    local copy's, so the gather reads just that copy's rows.
    """
    try:
        handle = variable.handle
    except ValueError:  # a mirrored variable outside any replica: read it whole
        return tf.gather(variable, indices)
    return tf.raw_ops.ResourceGather(resource=handle, indices=indices, dtype=variable.dtype)


class Optimizer(Module):
    """Base of the optimizers: `apply(updates, parameters)` and `build(parameters)`.

    Subclasses set `_slots` (pairs of the attribute holding a per-parameter slot list,
    which their constructor sets to `[]`, and the name prefix of its variables, as Sonnet
    names them), `_hyperparameter_names` (attributes that may be numbers, variables or
    schedules) and `_always_counts` (whether the step counter exists even without a
    schedule, as Adam's bias correction needs it), and implement `_coefficients`,
    `_dense` and `_sparse`.

    The step counter, `step` (an int64 variable named "t", as Sonnet's Adam names it),
    exists when `_always_counts` or when a hyperparameter is a schedule at build time;
    otherwise `step` is None and the optimizer's state is exactly Sonnet's.
    """

    _slots: tuple[tuple[str, str], ...] = ()
    _hyperparameter_names: tuple[str, ...] = ("learning_rate",)
    _always_counts: bool = False

    _TF_MODULE_IGNORED_PROPERTIES = Module._TF_MODULE_IGNORED_PROPERTIES | frozenset((_BUILT_FOR, _SLOTS_BY_PARAMETER))

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
        self.step = None

    def __deepcopy__(self, memo: dict) -> "Optimizer":
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        state = {k: v for k, v in self.__dict__.items() if k != _BUILT_FOR}
        clone.__dict__.update(copy.deepcopy(state, memo))
        built = self.__dict__.get(_BUILT_FOR)
        if isinstance(built, _CopiedParameters):
            built = built.resolve()
        if built is not None:
            clone.__dict__[_BUILT_FOR] = _CopiedParameters(built, memo)
        return clone

    def build(self, parameters: Sequence[tf.Variable]) -> None:
        """Creates the step counter and the slots for `parameters` now, if not yet made.

        Needed before a traced multi-replica step (see the module docstring); elsewhere
        the first `apply` does it.

        Raises:
          ValueError: if `parameters` is empty, or differs from the list the slots were
            built for.
          TypeError: if a parameter is not a floating-point `tf.Variable`.
        """
        self._initialize(parameters)
        built = self._built_for()
        if self.__dict__[_SLOTS_BY_PARAMETER] is None:
            if not parameters:
                raise ValueError(f"{utils.describe(self)}: parameters is empty")
            for i, p in enumerate(parameters):
                self._check_parameter(i, p)
        elif len(parameters) != len(built) or any(p is not b for p, b in zip(parameters, built)):
            self._check_parameters(parameters)

    @once
    def _initialize(self, parameters: Sequence[tf.Variable]) -> None:
        parameters = tuple(parameters)
        if not parameters:
            raise ValueError(f"{utils.describe(self)}: parameters is empty")
        for i, p in enumerate(parameters):
            self._check_parameter(i, p)
        if self._always_counts or any(is_schedule(getattr(self, n)) for n in self._hyperparameter_names):
            self.step = distribute.state_variable(tf.constant(0, tf.int64), name="t", aggregation="none")
        slots = []
        for attribute, prefix in self._slots:
            variables = [_zeros_like(f"{prefix}/{p.name.split(':')[0]}", p) for p in parameters]
            # Extend the list made in the constructor rather than replace it: a checkpoint
            # read before the slots exist waits on that list, and restores into what is
            # appended to it.
            getattr(self, attribute).extend(variables)
            slots.append(variables)
        self.__dict__[_SLOTS_BY_PARAMETER] = tuple(zip(*slots)) if slots else None
        self.__dict__[_BUILT_FOR] = parameters

    def _built_for(self) -> tuple:
        """The parameter list the slots were built for."""
        built = self.__dict__[_BUILT_FOR]
        if isinstance(built, _CopiedParameters):
            built = self.__dict__[_BUILT_FOR] = built.resolve()
        return built

    def apply(self, updates: Sequence[Update], parameters: Sequence[tf.Variable]) -> None:
        """Applies one update to each parameter: `updates[i]` to `parameters[i]`.

        Args:
          updates: one per parameter: a tensor of the parameter's shape and dtype, a
            `tf.IndexedSlices` of rows of it, or None to leave that parameter (and its
            slots) alone. Usually the (all-reduced) gradients.
          parameters: the variables to change; the same list on every call, unless the
            optimizer has no slots (SGD).

        Raises:
          ValueError: if the lists differ in length, are empty, hold no update at all,
            if `parameters` is not the list the slots were built for (optimizers with
            slots), or an update's shape does not match its parameter's.
          TypeError: if a parameter is not a floating-point `tf.Variable`, or an update's
            dtype differs from its parameter's (a `DTypeMismatchError`, which is also a
            `ValueError`, what Sonnet's optimizers raise then).
        """
        if len(updates) != len(parameters):
            raise ValueError(
                f"{utils.describe(self)}: got {len(updates)} updates for {len(parameters)} parameters; "
                "pass one update (or None) per parameter"
            )
        self._initialize(parameters)
        built = self.__dict__[_BUILT_FOR]
        if type(built) is not tuple:
            built = self._built_for()
        slots = self.__dict__[_SLOTS_BY_PARAMETER]
        if slots is not None and len(parameters) != len(built):
            self._check_parameters(parameters)
        # Check everything before writing anything, so a bad call changes no state.
        work = []
        for i, (u, p) in enumerate(zip(updates, parameters)):
            if i >= len(built) or p is not built[i]:
                if slots is not None:
                    self._check_parameters(parameters)
                self._check_parameter(i, p)
            if u is None:
                continue
            if isinstance(u, tf.IndexedSlices):
                bad = u.values.dtype is not p.dtype or u.values.shape[1:] != p.shape[1:]
            else:
                if not isinstance(u, tf.Tensor):
                    u = tf.convert_to_tensor(u)
                bad = u.dtype is not p.dtype or u.shape != p.shape
            if bad:
                self._check_update(u, p)
            work.append((i, u, p))
        if not work:
            if not parameters:
                raise ValueError(f"{utils.describe(self)}: parameters is empty")
            raise ValueError(f"{utils.describe(self)}: every update is None; there is nothing to apply")

        count = None
        if self.step is not None:
            count = tf.convert_to_tensor(self.step)
            self.step.assign_add(1, read_value=False)
        coefficients = {}
        for i, u, p in work:
            dtype = compute_dtype(p.dtype)
            c = coefficients.get(dtype)
            if c is None:
                c = coefficients[dtype] = self._coefficients(self._hyperparameters(dtype, count), count)
            if isinstance(u, tf.IndexedSlices):
                self._sparse(u, p, slots[i] if slots else (), c)
            else:
                self._dense(u, p, slots[i] if slots else (), c)

    # --- for subclasses ---------------------------------------------------------------

    def _coefficients(self, hyper: tuple[tf.Tensor, ...], count: tf.Tensor | None) -> tuple:
        """Scalars used by every parameter of one compute dtype in one step.

        `hyper` holds the hyperparameters as scalars of the compute dtype (float32, or
        float64 for float64 parameters; see `compute_dtype`).
        """
        del count
        return hyper

    def _dense(self, update: tf.Tensor, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        """Applies a dense `update` to `parameter`, whose slot variables are `slots`.

        The coefficients `c` are in the compute dtype, which differs from the
        parameter's for float16 and bfloat16: `cast` the update and the slots to it,
        and the results back.
        """
        raise NotImplementedError

    def _sparse(self, update: tf.IndexedSlices, parameter: tf.Variable, slots: tuple, c: tuple) -> None:
        """Applies a `tf.IndexedSlices` update to the rows of `parameter` (and `slots`) it names."""
        raise NotImplementedError

    # --- internals ------------------------------------------------------------------

    def _hyperparameters(self, dtype: tf.DType, count: tf.Tensor | None) -> tuple[tf.Tensor, ...]:
        """Each hyperparameter's value for this step, as a scalar of `dtype`."""
        values = []
        for name in self._hyperparameter_names:
            value = getattr(self, name)
            if isinstance(value, numbers.Real):
                # Straight to `dtype`: a float64 model gets the float64 value of 0.1.
                values.append(tf.constant(float(value), dtype))
                continue
            if is_schedule(value):
                if count is None:
                    raise ValueError(
                        f"{utils.describe(self)}: {name} became a schedule after the optimizer was built, "
                        "so it has no step counter; pass schedules to the constructor"
                    )
                value = value(count)
            values.append(tf.cast(value, dtype))
        return tuple(values)

    def _check_parameters(self, parameters: Sequence[tf.Variable]) -> None:
        built = self.__dict__[_BUILT_FOR]
        if len(parameters) != len(built):
            raise ValueError(
                f"{utils.describe(self)}: got {len(parameters)} parameters, but the slots were built for "
                f"{len(built)}; an optimizer serves one fixed list of parameters (make a new optimizer "
                "for another list)"
            )
        for i, (p, b) in enumerate(zip(parameters, built)):
            if p is b:
                continue
            name = getattr(p, "name", None)
            if name == b.name:
                raise ValueError(
                    f"{utils.describe(self)}: parameter {i} is not the variable the slots were built for: "
                    f"both are named {name!r}, but they are different variables (a copy of the model made "
                    "without the optimizer? copy both in one copy.deepcopy call); an optimizer with slots "
                    "serves one fixed list of parameters"
                )
            raise ValueError(
                f"{utils.describe(self)}: parameter {i} is {name or p!r}, but the slots were "
                f"built for {b.name!r}; an optimizer with slots serves one fixed list of parameters (make a "
                "new optimizer for another list)"
            )

    def _check_parameter(self, i: int, p: Any) -> None:
        if not isinstance(p, tf.Variable):
            raise TypeError(f"{utils.describe(self)}: parameter {i} is not a tf.Variable, got {p!r}")
        if not p.dtype.is_floating:
            raise TypeError(
                f"{utils.describe(self)}: parameter {p.name!r} must be floating point, got dtype {p.dtype.name}"
            )

    def _check_update(self, update: Update, parameter: tf.Variable) -> None:
        sparse = isinstance(update, tf.IndexedSlices)
        values = update.values if sparse else update
        if tf.as_dtype(values.dtype) != parameter.dtype:
            raise DTypeMismatchError(
                f"{utils.describe(self)}: the update of parameter {parameter.name!r} has dtype "
                f"{tf.as_dtype(values.dtype).name}, but the parameter has dtype {parameter.dtype.name}"
            )
        if sparse:
            rows = values.shape
            if rows.rank is not None and (
                rows.rank != parameter.shape.rank or not rows[1:].is_compatible_with(parameter.shape[1:])
            ):
                raise ValueError(
                    f"{utils.describe(self)}: the sparse update of parameter {parameter.name!r} has rows of "
                    f"shape {values.shape[1:]}, expected {parameter.shape[1:]} (parameter shape {parameter.shape})"
                )
        elif not values.shape.is_compatible_with(parameter.shape):
            raise ValueError(
                f"{utils.describe(self)}: the update of parameter {parameter.name!r} has shape {values.shape}, "
                f"expected {parameter.shape}"
            )


class DTypeMismatchError(TypeError, ValueError):
    """An update whose dtype is not its parameter's.

    A `TypeError`, as every dtype mismatch in the core, and a `ValueError`, as Sonnet's
    optimizers raise, so that code written for either catches it.
    """


def _zeros_like(name: str, parameter: tf.Variable) -> tf.Variable:
    """A zero slot shaped like `parameter`, next to it (under a strategy, where it says)."""
    place = contextlib.nullcontext() if tf.distribute.has_strategy() else tf.device(parameter.device)
    with place:
        return distribute.state_variable(tf.zeros(parameter.shape, parameter.dtype), name=name, aggregation="none")
