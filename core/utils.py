"""Helpers for module authors and users: input checks, weight porting, seeding.

The check functions give every module the same error style: the module's class and
name, what was expected, and the shape or dtype that came in.
"""

import collections
import numbers
import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "describe",
    "check_rank",
    "check_min_rank",
    "check_size",
    "check_dtype",
    "check_floating",
    "check_broadcasts_to",
    "is_int",
    "positive_int",
    "channel_index",
    "flag",
    "port_variables",
    "set_seed",
]


def describe(module: tf.Module) -> str:
    """Returns how errors name a module: its class and its name, `Linear 'encoder'`."""
    return f"{type(module).__name__} {module.name!r}"


def is_int(value: Any) -> bool:
    """Whether `value` is a Python or NumPy integer (bools are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(module: tf.Module, value: Any, what: str) -> int:
    """`value` as an int if it is a positive Python or NumPy integer; else `ValueError`
    naming the module and the argument `what`."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{describe(module)}: {what} must be a positive int, got {value!r}")
    return int(value)


_CHANNELS_FIRST = re.compile(r"NC[^C]*")
_CHANNELS_LAST = re.compile(r"N[^C]*C|(BT|TB)[^D]*D")


def channel_index(data_format: Any) -> int | None:
    """The channel axis a data format names: 1 for channels first ("channels_first",
    "NCHW", "NCW", ...), -1 for channels last ("channels_last", "NHWC", or a sequential
    "BTD", "TBHWD", ...); None for anything else."""
    if not isinstance(data_format, str):
        return None
    if data_format == "channels_first" or _CHANNELS_FIRST.fullmatch(data_format):
        return 1
    if data_format == "channels_last" or _CHANNELS_LAST.fullmatch(data_format):
        return -1
    return None


def flag(module: tf.Module, value: Any, what: str) -> bool | tf.Tensor:
    """A boolean mode argument (`is_training`, say): a Python bool, or a boolean scalar tensor.

    Python and NumPy bools (0-d boolean arrays included) come back as a Python bool,
    tensors and variables of dtype bool and rank 0 (or unknown rank) as they are.
    Anything else raises `TypeError`: read by its truthiness, the string "no" would mean
    True.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim == 0:
        return bool(value)
    if tf.is_tensor(value) or isinstance(value, tf.Variable):
        if value.dtype != tf.bool or value.shape.rank not in (None, 0):
            raise TypeError(
                f"{describe(module)}: {what} must be a boolean scalar, got dtype {value.dtype.name} "
                f"and shape {value.shape}"
            )
        return value
    raise TypeError(f"{describe(module)}: {what} must be a bool or a boolean scalar tensor, got {value!r}")


def _shape_of(value: Any) -> tf.TensorShape:
    return tf.TensorShape(getattr(value, "shape", None))


def check_rank(module: tf.Module, value: Any, rank: int, what: str = "inputs", layout: str = "") -> None:
    """Raises ValueError unless `value` has exactly `rank` dimensions.

    `layout` names the axes for the message, "[batch, time, features]" say.
    """
    shape = _shape_of(value)
    if shape.rank is None or shape.rank != rank:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{describe(module)}: expected {what} of rank {rank}{hint}, got shape {shape}")


def check_min_rank(module: tf.Module, value: Any, min_rank: int, what: str = "inputs", layout: str = "") -> None:
    """Raises ValueError unless `value` has at least `min_rank` dimensions."""
    shape = _shape_of(value)
    if shape.rank is None or shape.rank < min_rank:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{describe(module)}: expected {what} of rank at least {min_rank}{hint}, got shape {shape}")


def check_size(
    module: tf.Module,
    value: Any,
    axis: int,
    expected: int,
    what: str = "inputs",
    meaning: str = "size",
) -> None:
    """Raises ValueError when the static size of `axis` is known and differs from `expected`."""
    shape = _shape_of(value)
    size = shape[axis] if shape.rank is not None and -shape.rank <= axis < shape.rank else None
    if size is not None and size != expected:
        raise ValueError(
            f"{describe(module)}: expected {what} with {meaning} {expected} on axis {axis}, got shape {shape}"
        )


def check_dtype(module: tf.Module, value: Any, dtype: tf.DType, what: str = "inputs") -> None:
    """Raises TypeError when `value`'s dtype differs from the module's `dtype`."""
    got = tf.as_dtype(value.dtype)
    if got != dtype:
        raise TypeError(
            f"{describe(module)}: {what} have dtype {got.name}, but the module works in "
            f"{tf.as_dtype(dtype).name} (its parameters were made from the first input); "
            "cast the inputs or make a new module"
        )


def check_floating(module: tf.Module, value: Any, what: str = "inputs") -> None:
    """Raises TypeError unless `value` has a floating-point dtype."""
    got = tf.as_dtype(value.dtype)
    if not got.is_floating:
        raise TypeError(f"{describe(module)}: {what} must be floating point, got dtype {got.name}")


def check_broadcasts_to(module: tf.Module, value: Any, shape: tf.TensorShape, what: str, hint: str = "") -> None:
    """Raises ValueError when `value` would broadcast `shape` up to a bigger shape.

    For values combined elementwise with an input (a call-time scale or offset): one of
    shape [channels] or [batch, 1, ..., channels] broadcasts *to* the input and is fine;
    one with more axes, or a size other than 1 or the input's, would silently enlarge
    the output. Static shapes only: unknown sizes pass.
    """
    if value is None:
        return
    value_shape = getattr(value, "shape", None)
    value_shape = tf.TensorShape(np.shape(value) if value_shape is None else value_shape)
    shape = tf.TensorShape(shape)
    if value_shape.rank is None or shape.rank is None:
        return
    fits = value_shape.rank <= shape.rank and all(
        a is None or b is None or a == 1 or a == b
        for a, b in zip(reversed(value_shape.as_list()), reversed(shape.as_list()))
    )
    if not fits:
        raise ValueError(
            f"{describe(module)}: {what} of shape {value_shape} does not broadcast to the inputs' shape "
            f"{shape}; the output must keep the inputs' shape{hint}"
        )


def _relative_names(module: tf.Module) -> list[tuple[str, tf.Variable]]:
    """Each variable of `module` with its name below the module's own name scope."""
    prefix = module.name_scope.name
    out = []
    for v in module.variables:
        name = v.name.split(":")[0]
        if name.startswith(prefix):
            name = name[len(prefix) :]
        elif f"{module.name}/" in name:
            # Created under a uniquified scope ("linear_1/w"): cut at the module's own name.
            name = name.split(f"{module.name}/", 1)[1]
        out.append((name, v))
    return out


def port_variables(
    src: tf.Module,
    dst: tf.Module,
    name_map: Callable[[str], str] | None = None,
) -> list[tuple[str, str]]:
    """Copies the values of `src`'s variables into `dst`'s, matched by name.

    Names are compared below each module's own scope, so `mlp/linear_0/w` of one
    matches `net/linear_0/w` of the other when `src` is named "mlp" and `dst` "net". Both
    modules must already have their variables (call each once). Variables that share a
    name (two unnamed submodules built in eager mode, say) are matched in the order the
    modules list them. Works in either direction between this library and any
    `tf.Module` with the same naming, such as dm-sonnet 2.

    Args:
      src: the module to copy from.
      dst: the module to copy into.
      name_map: optional function from a `src` relative name to the `dst` one.

    Returns:
      The (src name, dst name) pairs copied, in `dst`'s variable order.

    Raises:
      ValueError: when a name has no partner, or two partners differ in shape.
      TypeError: when two partners differ in dtype.
    """
    src_by_name: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    for name, v in _relative_names(src):
        src_by_name[name_map(name) if name_map else name].append((name, v))
    dst_vars = _relative_names(dst)
    missing = [name for name, _ in dst_vars if not src_by_name.get(name)]
    dst_count = collections.Counter(name for name, _ in dst_vars)
    extra = [n for n, q in src_by_name.items() if len(q) > dst_count.get(n, 0)]
    if missing or extra:
        raise ValueError(
            f"port_variables({src.name!r} -> {dst.name!r}): names do not match; "
            f"only in the destination: {sorted(missing)}; only in the source: {sorted(extra)}"
        )
    pairs = []
    for name, dst_var in dst_vars:
        src_name, src_var = src_by_name[name].popleft()
        if src_var.shape != dst_var.shape:
            raise ValueError(
                f"port_variables: {src_name!r} has shape {src_var.shape} in the source but "
                f"{dst_var.shape} in the destination"
            )
        if src_var.dtype != dst_var.dtype:
            raise TypeError(
                f"port_variables: {src_name!r} has dtype {src_var.dtype.name} in the source but "
                f"{dst_var.dtype.name} in the destination"
            )
        dst_var.assign(src_var.read_value())
        pairs.append((src_name, name))
    return pairs


def set_seed(seed: int) -> None:
    """Makes a run reproducible from one integer: the project's seeding policy.

    Seeds Python's `random`, NumPy's global generator and TensorFlow's global seed (which
    fixes initializers and other op-seeded random ops), and replaces TensorFlow's global
    `tf.random.Generator` with one made from `seed`. Modules that draw random numbers
    during training (`Dropout`) take their own generator from that global one when
    they are built, and keep it as a variable, so its state is saved in checkpoints and a
    resumed run continues the same random stream. Call it once, at the start of a
    program, before building modules.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"set_seed takes an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
