"""nets.MLP: parity with Sonnet, dropout, reverse, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity, outputs_and_input_grads


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(output_sizes=[4, 3]), (2, 5)),
        (dict(output_sizes=[4, 4, 2], activate_final=True, activation=tf.nn.tanh), (3, 5)),
        (dict(output_sizes=[3], with_bias=False), (2, 2, 5)),
    ],
)
def test_matches_sonnet(kwargs, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    assert_parity(core.nets.MLP(**kwargs), snt.nets.MLP(**kwargs), [x])


def test_with_dropout_matches_sonnet_when_not_training(rng):
    x = tf.constant(rng.normal(size=(3, 5)).astype(np.float32))
    ours = core.nets.MLP([4, 3], dropout_rate=0.5, activate_final=True)
    theirs = snt.nets.MLP([4, 3], dropout_rate=0.5, activate_final=True)
    ours(x, is_training=False)
    theirs(x, is_training=False)
    # Ours also holds the dropout's random state, so port the layers one by one.
    for mine, sonnets in zip(ours.layers, theirs.submodules):
        core.utils.port_variables(sonnets, mine)
    a = outputs_and_input_grads(lambda v: ours(v, is_training=False), [x])
    b = outputs_and_input_grads(lambda v: theirs(v, is_training=False), [x])
    for got, want in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_layers_hold_only_the_linear_layers_with_dropout_as_in_sonnet():
    ours = core.nets.MLP([4, 3, 2], dropout_rate=0.5)
    theirs = snt.nets.MLP([4, 3, 2], dropout_rate=0.5)
    assert len(ours.layers) == len(theirs._layers) == 3
    assert all(isinstance(layer, core.Linear) for layer in ours.layers)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs._layers]
    ours(tf.ones([1, 2]), is_training=False), theirs(tf.ones([1, 2]), is_training=False)
    # The Linear layers come first among the submodules, in Sonnet's order; then the dropout.
    assert [m.name for m in ours.submodules] == [m.name for m in theirs.submodules] + ["dropout"]


def test_dropout_applies_before_each_activation_while_training():
    x = tf.ones([64, 3])
    mlp = core.nets.MLP([8, 2], dropout_rate=0.5, activation=lambda h: h + 100.0, w_init=core.initializers.Ones())
    mlp(x, is_training=False)
    start = mlp.dropout.rng_state.numpy()
    hidden = mlp.dropout(mlp.layers[0](x), True)  # the mask the first layer gets
    mlp.dropout.rng_state.assign(start)
    out = mlp(x, is_training=True)
    expected = mlp.layers[1](hidden + 100.0)  # activation after dropout, none after the last layer
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)
    assert np.mean(hidden.numpy() == 0) == pytest.approx(0.5, abs=0.1)


def test_layer_names_and_reverse():
    mlp = core.nets.MLP([4, 3], activate_final=True, name="enc")
    y = mlp(tf.ones([2, 6]))
    assert sorted(v.name for v in mlp.variables) == [
        "enc/linear_0/b:0",
        "enc/linear_0/w:0",
        "enc/linear_1/b:0",
        "enc/linear_1/w:0",
    ]
    rev = mlp.reverse(activate_final=False)
    assert rev.name == "enc_reversed" and not rev.activate_final
    assert rev(y).shape == (2, 6)
    assert [layer.output_size for layer in rev.layers] == [4, 6]
    assert sorted(v.name for v in rev.variables)[0] == "enc_reversed/linear_0/b:0"


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"MLP 'mlp': is_training is required when dropout_rate is set"):
        core.nets.MLP([2], dropout_rate=0.1)(tf.ones([1, 2]))
    with pytest.raises(ValueError, match=r"MLP 'mlp': is_training=True given, but it only matters with dropout_rate"):
        core.nets.MLP([2])(tf.ones([1, 2]), is_training=True)
    with pytest.raises(ValueError, match=r"MLP 'mlp': call the MLP once before reverse\(\)"):
        core.nets.MLP([2]).reverse()
    with pytest.raises(ValueError, match="b_init given but with_bias=False"):
        core.nets.MLP([2], with_bias=False, b_init=core.initializers.Zeros())
    with pytest.raises(ValueError, match=r"Linear 'linear_0': output_size must be a positive int, got 0"):
        core.nets.MLP([0])
    with pytest.raises(ValueError, match=r"Linear 'linear_0': expected inputs of rank at least 2 .* got shape \(3,\)"):
        core.nets.MLP([2])(tf.ones([3]))


def test_numpy_sizes_and_rate():
    mlp = core.nets.MLP(np.array([3, 4]))
    assert mlp(tf.ones([2, 5])).shape == (2, 4)
    assert [layer.output_size for layer in mlp.layers] == [3, 4]
    assert all(type(layer.output_size) is int for layer in mlp.layers)
    # A NumPy zero rate means no dropout, as Python's 0 does (and as in Sonnet).
    assert core.nets.MLP([2], dropout_rate=np.float32(0))(tf.ones([1, 2])).shape == (1, 2)
