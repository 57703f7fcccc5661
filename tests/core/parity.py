"""Number-for-number comparison of a core module with its dm-sonnet 2 counterpart.

Both modules are built on the same input, Sonnet's weights are copied into ours by name
(`core.utils.port_variables`, which also proves the names and shapes agree), and then
outputs and gradients with respect to the inputs must agree within `atol` (float32).
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import core

TOL = 1e-5


def _weights(t: tf.Tensor) -> tf.Tensor:
    w = tf.sin(tf.range(tf.size(t), dtype=tf.float32) + 1.0)
    return tf.cast(tf.reshape(w, tf.shape(t)), t.dtype)


def outputs_and_input_grads(fn: Callable[..., Any], inputs: list[tf.Tensor]):
    """Outputs of `fn(*inputs)` and d(sum of a fixed random projection of them)/d inputs."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = fn(*inputs)
        flat = [o for o in tf.nest.flatten(outputs) if o.dtype.is_floating]
        # A fixed, non-uniform weighting, so that every output element matters differently.
        loss = tf.add_n([tf.reduce_sum(o * _weights(o)) for o in flat])
    float_inputs = [x for x in inputs if x.dtype.is_floating]
    grads = tape.gradient(loss, float_inputs)
    return [np.asarray(o) for o in tf.nest.flatten(outputs)], [np.asarray(g) for g in grads if g is not None]


def assert_parity(
    ours: tf.Module,
    theirs: tf.Module,
    inputs: list[Any],
    call_ours: Callable[..., Any] | None = None,
    call_theirs: Callable[..., Any] | None = None,
    atol: float = TOL,
    rtol: float = TOL,
) -> None:
    """Asserts that `ours` and `theirs` compute the same thing once weights are shared.

    `call_ours(module, *inputs)` and `call_theirs(module, *inputs)` default to calling
    the module on the inputs. Both are called once to build, then Sonnet's variables
    are copied into ours, then outputs and input gradients are compared.
    """
    call_ours = call_ours or (lambda m, *x: m(*x))
    call_theirs = call_theirs or (lambda m, *x: m(*x))
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    call_theirs(theirs, *inputs)
    call_ours(ours, *inputs)
    # `tf.Module.variables` directly: Sonnet's own property raises for stateless modules.
    if tf.Module.variables.fget(theirs) or ours.variables:
        core.utils.port_variables(theirs, ours)
    their_out, their_grads = outputs_and_input_grads(lambda *x: call_theirs(theirs, *x), inputs)
    our_out, our_grads = outputs_and_input_grads(lambda *x: call_ours(ours, *x), inputs)
    assert len(our_out) == len(their_out)
    for i, (a, b) in enumerate(zip(our_out, their_out)):
        assert a.shape == b.shape, f"output {i}: {a.shape} vs sonnet {b.shape}"
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=f"output {i}")
    assert len(our_grads) == len(their_grads)
    for i, (a, b) in enumerate(zip(our_grads, their_grads)):
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=f"input gradient {i}")
