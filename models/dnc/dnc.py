"""The Differentiable Neural Computer: an LSTM controller with an external memory.

Graves et al., "Hybrid computing using a neural network with dynamic external memory",
Nature 538 (2016). One step:

1. the controller reads concat(x_t, the previous step's read words);
2. its output and state are clipped to +-clip_value (when set);
3. the memory access turns the controller output into this step's read words;
4. y_t = Linear(concat(controller output, read words)), clipped likewise.
"""

import collections
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

import core
from models.dnc.access import AccessState, MemoryAccess

DNCState = collections.namedtuple("DNCState", ["access_output", "access_state", "controller_state"])


class DNC(core.RNNCore):
    """A DNC core: `output, next_state = dnc(inputs, prev_state)`, batch-major, one step.

    Works with any batch size (`initial_state` takes a tensor too), under
    `core.dynamic_unroll`, `tf.function` and XLA. Backprop through T steps keeps
    several T x N^2 tensors per write head (the link update's intermediates); to train
    large memories, unroll with `core.checkpointed_unroll`, which recomputes them.

    Inputs are either x_t [B, input_size], or a pair `(x_t, reset)` with `reset` a
    boolean [B]: where it is true, that element's state restarts from zero before the
    step, as at the start of a sequence. That lets several sequences be packed one
    after another in one long stream, and an agent restart its memory at episode
    boundaries, without re-making the state.

    Args:
      access_config: keyword arguments of `MemoryAccess` (memory_size, word_size,
        num_reads, num_writes, strength_op, masking, deallocation, link_sharpening).
      controller_config: keyword arguments of the `core.LSTM` controller
        (hidden_size, and optionally forget_bias, layer_norm, ...).
      output_size: size of y_t.
      clip_value: clip the controller output and state and y_t to +-clip_value
        (DeepMind's default is 20); None for no clipping.
      dtype: dtype of the state and parameters.
      w_init: initializer of every weight matrix (controller, interface, output);
        None keeps each module's default (truncated normal, stddev 1/sqrt(fan_in)).
        The paper's bAbI runs used N(0, 0.1).
      name: module name.
    """

    def __init__(
        self,
        access_config: Mapping[str, Any],
        controller_config: Mapping[str, Any],
        output_size: int,
        clip_value: float | None = None,
        dtype: tf.DType = tf.float32,
        w_init: core.initializers.Initializer | None = None,
        name: str = "dnc",
    ):
        super().__init__(name=name)
        if not core.utils.is_int(output_size) or output_size < 1:
            raise ValueError(f"{core.utils.describe(self)}: output_size must be a positive int, got {output_size!r}")
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"{core.utils.describe(self)}: clip_value must be positive or None, got {clip_value!r}")
        controller_config = dict(controller_config)
        if "hidden_size" not in controller_config:
            raise ValueError(
                f"{core.utils.describe(self)}: controller_config needs hidden_size, got {controller_config}"
            )
        self.dtype = tf.as_dtype(dtype)
        self.output_size = output_size
        self.clip_value = clip_value
        if w_init is not None:
            controller_config.setdefault("w_i_init", w_init)
            controller_config.setdefault("w_h_init", w_init)
            access_config = {"w_init": w_init, **access_config}
        self.controller = core.LSTM(dtype=self.dtype, name="controller", **controller_config)
        self.access = MemoryAccess(dtype=self.dtype, **dict(access_config))
        self.output_linear = core.Linear(output_size, w_init=w_init, name="output_linear")
        self._read_size = self.access.num_reads * self.access.word_size

    def initial_state(self, batch_size: int | tf.Tensor) -> DNCState:
        """All zeros: no read words, empty memory, zero controller state."""
        return DNCState(
            access_output=tf.zeros([batch_size, self.access.num_reads, self.access.word_size], self.dtype),
            access_state=self.access.initial_state(batch_size),
            controller_state=self.controller.initial_state(batch_size),
        )

    def __call__(
        self, inputs: tf.Tensor | tuple[tf.Tensor, tf.Tensor], prev_state: DNCState
    ) -> tuple[tf.Tensor, DNCState]:
        """One step; returns (y_t [B, output_size], next state).

        Raises:
          ValueError: if x_t is not [batch, input_size] (or its size changes), or a
            reset flag is not [batch].
          TypeError: if x_t's dtype is not the module's, or the reset is not boolean.
        """
        output, state, _ = self.step_with_interface(inputs, prev_state)
        return output, state

    def step_with_interface(
        self, inputs: tf.Tensor | tuple[tf.Tensor, tf.Tensor], prev_state: DNCState
    ) -> tuple[tf.Tensor, DNCState, dict[str, tf.Tensor]]:
        """`__call__`, also returning the memory interface (gates, keys, modes) of the step.

        For inspection and plots: `visualize.py` draws the gates from it.
        """
        x, reset = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
        self._record_input_size(x)
        shape = x.shape
        # Cheap tests on the hot path; the detailed checks run only when they fail.
        if x.dtype is not self.dtype or shape.rank != 2 or shape[1] != self.input_size:
            self._check(x)
        if not self._state_fits(prev_state, shape[0]):
            self._check_state(x, prev_state)
        if reset is not None:
            if len(reset.shape) != 1 or tf.as_dtype(reset.dtype) != tf.bool or reset.shape[0] != shape[0]:
                self._check_reset(x, reset)
            prev_state = _reset(prev_state, reset)
        return self._step(x, prev_state)

    @core.once
    def _record_input_size(self, x: tf.Tensor) -> None:
        self._check(x)
        if x.shape[1] is None:
            raise ValueError(f"{core.utils.describe(self)}: the input size must be known, got shape {x.shape}")
        self.input_size = x.shape[1]

    def _step(self, x: tf.Tensor, prev_state: DNCState) -> tuple[tf.Tensor, DNCState, dict[str, tf.Tensor]]:
        prev_reads = tf.reshape(prev_state.access_output, [-1, self._read_size])
        controller_output, controller_state = self.controller(
            tf.concat([x, prev_reads], axis=1), prev_state.controller_state
        )
        controller_output = self._clip(controller_output)
        controller_state = tf.nest.map_structure(self._clip, controller_state)
        access_output, access_state, interface = self.access.step_with_interface(
            controller_output, prev_state.access_state
        )
        reads = tf.reshape(access_output, [-1, self._read_size])
        output = self._clip(self.output_linear(tf.concat([controller_output, reads], axis=1)))
        return output, DNCState(access_output, access_state, controller_state), interface

    def _clip(self, x: tf.Tensor) -> tf.Tensor:
        if self.clip_value is None:
            return x
        return tf.clip_by_value(x, -self.clip_value, self.clip_value)

    def _check(self, x: tf.Tensor) -> None:
        core.utils.check_dtype(self, x, self.dtype)
        core.utils.check_rank(self, x, 2, layout="[batch, input_size]")
        if hasattr(self, "input_size"):
            core.utils.check_size(self, x, 1, self.input_size, meaning="input size")

    def _state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape without batch) of every state tensor but the controller's, in nest order."""
        a = self.access
        n, w, r, wh = a.memory_size, a.word_size, a.num_reads, a.num_writes
        return [
            ("access_output", (r, w)),
            ("access_state.memory", (n, w)),
            ("access_state.read_weights", (r, n)),
            ("access_state.write_weights", (wh, n)),
            ("access_state.linkage.link", (wh, n, n)),
            ("access_state.linkage.precedence_weights", (wh, n)),
            ("access_state.usage", (n,)),
        ]

    def _state_fits(self, state: Any, batch: int | None) -> bool:
        """Whether `state` is a DNCState whose tensors have the expected static shapes and batch."""
        if not isinstance(state, DNCState) or not isinstance(state.access_state, AccessState):
            return False
        leaves = [state.access_output, *state.access_state[:3], *state.access_state.linkage, state.access_state.usage]
        for leaf, (_, expected) in zip(leaves, self._state_shapes()):
            got = leaf.shape
            if (
                got.rank != len(expected) + 1
                or got[1:] != expected
                or (batch is not None and got[0] not in (batch, None))
            ):
                return False
        return True

    def _check_state(self, x: tf.Tensor, state: Any) -> None:
        """ValueError naming the state tensor whose structure, shape or batch size is wrong."""
        batch = x.shape[0]
        if not isinstance(state, DNCState) or not isinstance(state.access_state, AccessState):
            raise ValueError(
                f"{core.utils.describe(self)}: prev_state must be a DNCState(access_output, access_state, "
                f"controller_state) as initial_state(batch_size) makes it, got {type(state).__name__}"
            )
        leaves = [state.access_output, *state.access_state[:3], *state.access_state.linkage, state.access_state.usage]
        for leaf, (name, expected) in zip(leaves, self._state_shapes()):
            got = tf.TensorShape(leaf.shape)
            if got.rank != len(expected) + 1 or got[1:] != expected:
                raise ValueError(
                    f"{core.utils.describe(self)}: prev_state.{name} has shape {got}, expected "
                    f"[batch, {', '.join(map(str, expected))}]; make the state with initial_state(batch_size)"
                )
            if batch is not None and got[0] is not None and got[0] != batch:
                raise ValueError(
                    f"{core.utils.describe(self)}: prev_state.{name} has batch size {got[0]} (shape {got}) but "
                    f"the inputs have {batch} (shape {x.shape}); make the state with initial_state({batch})"
                )

    def _check_reset(self, x: tf.Tensor, reset: tf.Tensor) -> None:
        if tf.as_dtype(reset.dtype) != tf.bool:
            raise TypeError(
                f"{core.utils.describe(self)}: reset must be boolean [batch], got dtype {tf.as_dtype(reset.dtype).name}"
            )
        core.utils.check_rank(self, reset, 1, what="reset", layout="[batch]")
        if x.shape[0] is not None and reset.shape[0] is not None and x.shape[0] != reset.shape[0]:
            raise ValueError(
                f"{core.utils.describe(self)}: reset has shape {reset.shape} "
                f"but the inputs have batch size {x.shape[0]}"
            )


def _reset(state: Any, reset: tf.Tensor) -> Any:
    """Zeroes the state of the batch elements where `reset` is true (the initial state)."""
    keep = 1.0 - tf.cast(reset, tf.float32)

    def apply(leaf: tf.Tensor) -> tf.Tensor:
        return leaf * tf.reshape(tf.cast(keep, leaf.dtype), [-1] + [1] * (leaf.shape.rank - 1))

    return tf.nest.map_structure(apply, state)


__all__ = ["DNC", "DNCState", "AccessState"]
