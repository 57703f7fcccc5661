"""MLP: a stack of Linear layers with an activation between them."""

import numbers
from collections.abc import Callable, Iterable

import tensorflow as tf

from core import initializers, utils
from core.dropout import Dropout
from core.linear import Linear
from core.module import Module, no_name_scope


class MLP(Module):
    """A multi-layer perceptron: Linear layers `linear_0`, `linear_1`, ... with activations.

    Every layer but the last is followed by `activation` (the last too, with
    `activate_final`). With `dropout_rate`, dropout is applied before each of those
    activations while training, as in Sonnet; then the call needs `is_training`. The
    dropout draws its masks from the MLP's `dropout` submodule (see `core.Dropout`:
    reproducible, checkpointed random state), where Sonnet uses `tf.nn.dropout`.

    `layers` holds the Linear layers alone, with or without dropout (Sonnet's `_layers`).
    `submodules` lists them first, in order, then `dropout` when there is one, which
    Sonnet's MLP does not have: with dropout, it holds one module more than Sonnet's.

    Args:
      output_sizes: output size of each layer, in order (Python or NumPy integers, or a
        1-D NumPy integer array).
      w_init: initializer of every layer's `w`; see `Linear` for the default.
      b_init: initializer of every layer's `b`; zeros by default. Must be None without bias.
      with_bias: whether the layers add a bias.
      activation: the nonlinearity between layers.
      dropout_rate: probability of dropping each activation input while training; None
        or 0 for no dropout.
      activate_final: whether to apply dropout and `activation` after the last layer too.
      name: module name.
    """

    def __init__(
        self,
        output_sizes: Iterable[int],
        w_init: initializers.Initializer | None = None,
        b_init: initializers.Initializer | None = None,
        with_bias: bool = True,
        activation: Callable[[tf.Tensor], tf.Tensor] = tf.nn.relu,
        dropout_rate: float | None = None,
        activate_final: bool = False,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if not with_bias and b_init is not None:
            raise ValueError(f"{utils.describe(self)}: b_init given but with_bias=False")
        if not callable(activation):
            raise TypeError(f"{utils.describe(self)}: activation must be callable, got {activation!r}")
        self.w_init = w_init
        self.b_init = b_init
        self.with_bias = with_bias
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.activate_final = activate_final
        self._layers = [
            Linear(size, with_bias=with_bias, w_init=w_init, b_init=b_init, name=f"linear_{i}")
            for i, size in enumerate(output_sizes)
        ]
        # As in Sonnet, a rate of None or 0 means no dropout (and no `is_training` argument).
        no_dropout = dropout_rate is None or (isinstance(dropout_rate, numbers.Real) and dropout_rate == 0)
        # Named so that it sorts after `_layers`: `submodules` lists the Linear layers first, as Sonnet's.
        self.dropout = None if no_dropout else Dropout(dropout_rate)

    @property
    def layers(self) -> list[Linear]:
        """The Linear layers, in call order (a copy)."""
        return list(self._layers)

    def __call__(self, inputs: tf.Tensor, is_training: bool | tf.Tensor | None = None) -> tf.Tensor:
        """Applies the layers to `inputs` [batch..., input_size]; returns [batch..., output_sizes[-1]].

        Args:
          inputs: a floating-point tensor.
          is_training: whether dropout is active; required with `dropout_rate` and
            forbidden without it (as in Sonnet).

        Raises:
          ValueError: when `is_training` is missing with dropout, or given without it.
        """
        dropout = self.dropout
        if (dropout is None) != (is_training is None):
            self._explain_is_training(is_training)
        last = len(self._layers) - 1
        outputs = inputs
        for i, layer in enumerate(self._layers):
            outputs = layer(outputs)
            if i < last or self.activate_final:
                if dropout is not None:
                    outputs = dropout(outputs, is_training)
                outputs = self.activation(outputs)
        return outputs

    def _explain_is_training(self, is_training) -> None:
        if is_training is None:
            raise ValueError(f"{utils.describe(self)}: is_training is required when dropout_rate is set")
        raise ValueError(
            f"{utils.describe(self)}: is_training={is_training!r} given, but it only matters with dropout_rate"
        )

    @no_name_scope
    def reverse(self, activate_final: bool | None = None, name: str | None = None) -> "MLP":
        """A new MLP with the layer sizes mirrored, mapping this one's output size back to its input size.

        The new MLP shares no variables with this one. Its sizes are the input sizes of
        this MLP's layers, last first, so this MLP must have been called.

        Args:
          activate_final: whether the new MLP activates its last layer; defaults to this one's.
          name: defaults to this module's name + "_reversed".

        Raises:
          ValueError: if this MLP has not been called yet.
        """
        sizes = [getattr(layer, "input_size", None) for layer in reversed(self._layers)]
        if any(s is None for s in sizes):
            raise ValueError(f"{utils.describe(self)}: call the MLP once before reverse(), to learn its input sizes")
        return MLP(
            sizes,
            w_init=self.w_init,
            b_init=self.b_init,
            with_bias=self.with_bias,
            activation=self.activation,
            dropout_rate=self.dropout_rate,
            activate_final=self.activate_final if activate_final is None else activate_final,
            name=name or f"{self.name}_reversed",
        )
