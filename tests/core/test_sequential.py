"""Sequential: parity with Sonnet, argument passing, errors."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from tests.core.parity import assert_parity


def test_matches_sonnet(rng):
    x = rng.normal(size=(3, 5)).astype(np.float32)
    ours = core.Sequential([core.Linear(4), tf.nn.relu, core.Linear(2), tf.nn.tanh])
    theirs = snt.Sequential([snt.Linear(4), tf.nn.relu, snt.Linear(2), tf.nn.tanh])
    assert_parity(ours, theirs, [x])


def test_extra_arguments_go_to_the_first_layer_only():
    seen = []

    def first(x, scale, shift=0.0):
        seen.append(("first", scale, shift))
        return x * scale + shift

    def second(x):
        seen.append(("second",))
        return x + 1

    for seq in (core.Sequential([first, second]), snt.Sequential([first, second])):
        assert float(seq(tf.constant(1.0), 3.0, shift=2.0)) == 6.0
    assert seen == [("first", 3.0, 2.0), ("second",)] * 2


def test_empty_is_identity_and_layers_are_tracked():
    x = tf.ones([2])
    assert core.Sequential()(x) is x
    assert core.Sequential([])(x) is x
    seq = core.Sequential([core.Linear(3, name="a"), core.Linear(2, name="b")])
    seq(tf.ones([1, 4]))
    assert sorted(v.name for v in seq.variables) == ["a/b:0", "a/w:0", "b/b:0", "b/w:0"]
    assert [layer.name for layer in seq.layers] == ["a", "b"]


def test_bad_inputs():
    with pytest.raises(TypeError, match=r"Sequential 'stack': layer 1 is not callable: 3"):
        core.Sequential([tf.nn.relu, 3], name="stack")


def test_layers_sized_by_numpy_integers():
    # Sequential takes no sizes itself; what it chains must accept NumPy sizes.
    seq = core.Sequential([core.Linear(n) for n in np.array([3, 2])] + [core.nets.MLP(np.array([4]))])
    assert seq(tf.ones([1, 5])).shape == (1, 4)
