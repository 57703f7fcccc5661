"""Folding leading axes into one and back: BatchApply, Reshape, Flatten.

The usual use is time: a [time, batch, ...] sequence becomes a [time * batch, ...] batch
for a module that knows nothing of time, and its output is unfolded again.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from core import utils
from core.module import Module, no_name_scope, once


def _is_tensor(x: Any) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _merge_leading(module: Module, x: Any, num_dims: int) -> Any:
    """[d0, ..., d(n-1), rest...] -> [d0 * ... * d(n-1), rest...]; other leaves unchanged."""
    if not _is_tensor(x):
        return x
    shape = x.shape
    if shape.rank is None:
        raise ValueError(f"{utils.describe(module)}: cannot fold the leading axes of a tensor of unknown rank")
    if shape.rank < num_dims:
        return x  # too few axes to merge (scalars, say): passed on as they are
    leading = shape[:num_dims]
    merged = math.prod(leading.as_list()) if leading.is_fully_defined() else None
    target = tf.TensorShape([merged]).concatenate(shape[num_dims:])
    if target.is_fully_defined():
        return tf.reshape(x, target)
    dynamic = tf.shape(x)
    flat = tf.reshape(x, tf.concat([tf.reduce_prod(dynamic[:num_dims], keepdims=True), dynamic[num_dims:]], 0))
    flat.set_shape(target)  # the concat above hides what is known statically
    return flat


class BatchApply(Module):
    """Applies `module` with the leading `num_dims` axes of every input folded into one.

    Each tensor input of rank >= `num_dims`, anywhere in the nested arguments, is
    reshaped from [d0, ..., d(n-1), ...] to [d0 * ... * d(n-1), ...]; `module` runs on
    those, and the leading axis of every tensor it returns is split back into
    [d0, ..., d(n-1)]. Tensors of lower rank and non-tensor leaves (Python numbers,
    NumPy arrays, None) go to `module` unchanged, as in Sonnet.

    The leading sizes come from the first tensor leaf of rank >= `num_dims` (Sonnet uses
    the first leaf, whatever it is).

    Args:
      module: any callable taking and returning (nested) tensors.
      num_dims: how many leading axes to fold.
      name: module name.
    """

    def __init__(self, module: Callable[..., Any], num_dims: int = 2, name: str | None = None):
        super().__init__(name=name)
        if not callable(module):
            raise TypeError(f"{utils.describe(self)}: module must be callable, got {module!r}")
        self.num_dims = utils.positive_int(self, num_dims, "num_dims")
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls `module(*args, **kwargs)` with leading axes folded; returns its output unfolded.

        Raises:
          ValueError: when no input is a tensor of rank >= `num_dims`, or an output's
            leading size is not the product of the folded sizes.
        """
        n = self.num_dims
        example = next((x for x in tf.nest.flatten((args, kwargs)) if _is_tensor(x) and (x.shape.rank or 0) >= n), None)
        if example is None:
            raise ValueError(f"{utils.describe(self)}: needs at least one tensor input of rank >= num_dims={n}")
        args, kwargs = tf.nest.map_structure(lambda x: _merge_leading(self, x, n), (args, kwargs))
        outputs = self.module(*args, **kwargs)
        return tf.nest.map_structure(lambda y: self._split_leading(y, example), outputs)

    def _split_leading(self, y: Any, example: tf.Tensor) -> Any:
        if not _is_tensor(y):
            return y
        leading = example.shape[: self.num_dims]
        if y.shape.rank == 0:
            raise ValueError(f"{utils.describe(self)}: cannot split the leading axis of a scalar output")
        target = leading.concatenate(y.shape[1:])
        if target.is_fully_defined():
            if y.shape[0] is not None and y.shape[0] != math.prod(leading.as_list()):
                raise ValueError(
                    f"{utils.describe(self)}: expected outputs with leading size "
                    f"{math.prod(leading.as_list())} (inputs' leading axes {leading.as_list()}), got shape {y.shape}"
                )
            return tf.reshape(y, target)
        split = tf.reshape(y, tf.concat([tf.shape(example)[: self.num_dims], tf.shape(y)[1:]], 0))
        split.set_shape(target)
        return split


def _is_size(d: Any) -> bool:
    return utils.is_int(d) and d >= -1


class Reshape(Module):
    """Reshapes all but the leading `preserve_dims` axes to `output_shape`.

    [b1, ..., bp, rest...] becomes [b1, ..., bp, *output_shape]. One entry of
    `output_shape` may be -1, to be inferred from the input's size.

    Args:
      output_shape: the new shape of the non-preserved axes; ints >= 0 and at most one -1.
      preserve_dims: how many leading axes to keep as they are (>= 1).
      name: module name.
    """

    def __init__(self, output_shape: Sequence[int], preserve_dims: int = 1, name: str | None = None):
        super().__init__(name=name)
        if isinstance(output_shape, tf.TensorShape):
            output_shape = output_shape.as_list()
        output_shape = tuple(output_shape)
        if not all(_is_size(d) for d in output_shape) or output_shape.count(-1) > 1:
            raise ValueError(
                f"{utils.describe(self)}: output_shape must hold ints >= 0 and at most one -1, got {output_shape!r}"
            )
        if not utils.is_int(preserve_dims) or preserve_dims < 1:
            raise ValueError(f"{utils.describe(self)}: preserve_dims must be an int >= 1, got {preserve_dims!r}")
        self.output_shape = tuple(int(d) for d in output_shape)
        self.preserve_dims = int(preserve_dims)
        self._known = -1 not in self.output_shape
        self._fixed_size = abs(math.prod(self.output_shape))  # product without the -1

    @once
    def _initialize(self, inputs: tf.Tensor) -> None:
        # Only `reversed()` needs it: the shape of the first input.
        self.input_shape = inputs.shape

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """Reshapes `inputs` [b1, ..., bp, rest...] to [b1, ..., bp, *output_shape].

        Raises:
          ValueError: when `inputs` has fewer than `preserve_dims` axes, or its size does
            not fit `output_shape`.
        """
        self._initialize(inputs)
        p = self.preserve_dims
        shape = inputs.shape
        if shape.rank is None or shape.rank < p:
            utils.check_min_rank(self, inputs, p, layout=f"(preserve_dims={p})")
        new = self._resolve(shape, shape[p:])
        kept = shape[:p]
        if kept.is_fully_defined():
            return tf.reshape(inputs, kept.as_list() + new)
        return tf.reshape(inputs, tf.concat([tf.shape(inputs)[:p], tf.constant(new, tf.int32)], 0))

    def _resolve(self, shape: tf.TensorShape, rest: tf.TensorShape) -> list[int]:
        """`output_shape` with its -1 filled in when the reshaped size is known statically."""
        if not rest.is_fully_defined():
            return list(self.output_shape)  # tf.reshape infers the -1 at run time
        size = rest.num_elements()
        if self._known:
            fits = size == self._fixed_size
        else:
            fits = self._fixed_size > 0 and size % self._fixed_size == 0
        if not fits:
            raise ValueError(
                f"{utils.describe(self)}: expected inputs whose axes after the first {self.preserve_dims} "
                f"can be reshaped to {list(self.output_shape)}, got shape {shape}"
            )
        if self._known:
            return list(self.output_shape)
        return [size // self._fixed_size if d == -1 else d for d in self.output_shape]

    @no_name_scope
    def reversed(self, name: str | None = None) -> "Reshape":
        """A new Reshape that undoes this one: back to the first input's shape.

        Raises:
          ValueError: if this module has not been called yet, or the first input's
            reshaped axes were not all known.
        """
        shape = getattr(self, "input_shape", None)
        if shape is None:
            raise ValueError(
                f"{utils.describe(self)}: call the module once before reversed(), to learn its input shape"
            )
        rest = shape[self.preserve_dims :]
        if not rest.is_fully_defined():
            raise ValueError(
                f"{utils.describe(self)}: cannot reverse; the first input's shape {shape} is not fully known"
            )
        return Reshape(rest.as_list(), preserve_dims=self.preserve_dims, name=name or f"{self.name}_reversed")


class Flatten(Reshape):
    """Flattens all but the leading `preserve_dims` axes into one: [b1, ..., bp, prod(rest)].

    Args:
      preserve_dims: how many leading axes to keep as they are (>= 1).
      name: module name.
    """

    def __init__(self, preserve_dims: int = 1, name: str | None = None):
        super().__init__(output_shape=(-1,), preserve_dims=preserve_dims, name=name)
