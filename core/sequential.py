"""Sequential: a chain of callables, each fed the previous one's output."""

from collections.abc import Callable, Iterable
from typing import Any

from core import utils
from core.module import Module


class Sequential(Module):
    """Calls each layer on the output of the one before: `layers[-1](...layers[0](inputs))`.

    Layers may be modules or plain functions (`tf.nn.relu`, say). As in Sonnet, extra
    arguments of the call go to the first layer only; a model whose later layers need
    arguments (an `is_training` flag for a BatchNorm in the middle, say) is better
    written as a small module of its own.

    Args:
      layers: the callables, in order. None or empty makes the identity.
      name: module name.
    """

    def __init__(self, layers: Iterable[Callable[..., Any]] | None = None, name: str | None = None):
        super().__init__(name=name)
        layers = list(layers) if layers is not None else []
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"{utils.describe(self)}: layer {i} is not callable: {layer!r}")
        self._layers = layers

    @property
    def layers(self) -> list[Callable[..., Any]]:
        """The layers, in call order (a copy)."""
        return list(self._layers)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs the chain; `*args` and `**kwargs` go to the first layer with `inputs`."""
        if not self._layers:
            return inputs
        layers = iter(self._layers)
        outputs = next(layers)(inputs, *args, **kwargs)
        for layer in layers:
            outputs = layer(outputs)
        return outputs
