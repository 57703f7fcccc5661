"""core.utils: weight porting between modules, seeding, error helpers."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

import core
from core import utils


class Pair(core.Module):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.a = core.Linear(3, name="a")
        self.b = core.Linear(2, name="b")

    def __call__(self, x):
        return self.b(self.a(x))


def test_port_variables_matches_by_name_below_each_scope():
    src, dst = Pair(name="src"), Pair(name="dst")
    x = tf.ones([1, 4])
    src(x), dst(x)
    pairs = core.utils.port_variables(src, dst)
    assert sorted(pairs) == [("a/b", "a/b"), ("a/w", "a/w"), ("b/b", "b/b"), ("b/w", "b/w")]
    np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())


def test_port_variables_from_sonnet_mlp():
    theirs = snt.nets.MLP([3, 2])
    ours = Pair(name="mlp")
    x = tf.ones([1, 4])
    theirs(x), ours(x)
    names = {"linear_0": "a", "linear_1": "b"}
    core.utils.port_variables(theirs, ours, name_map=lambda n: names[n.split("/")[0]] + "/" + n.split("/")[1])
    for mine, sonnets in [(ours.a, theirs.submodules[0]), (ours.b, theirs.submodules[1])]:
        np.testing.assert_array_equal(mine.w.numpy(), sonnets.w.numpy())
        np.testing.assert_array_equal(mine.b.numpy(), sonnets.b.numpy())


def test_port_variables_errors_name_the_problem():
    src, dst = Pair(), core.Linear(3)
    src(tf.ones([1, 4])), dst(tf.ones([1, 4]))
    with pytest.raises(
        ValueError, match=r"only in the destination: \['b', 'w'\]; only in the source: \['a/b', 'a/w', 'b/b', 'b/w'\]"
    ):
        core.utils.port_variables(src, dst)
    wide = core.Linear(3)
    wide(tf.ones([1, 5]))
    with pytest.raises(ValueError, match=r"'w' has shape \(5, 3\) in the source but \(4, 3\) in the destination"):
        core.utils.port_variables(wide, dst)
    double = core.Linear(3)
    double(tf.ones([1, 4], tf.float64))
    with pytest.raises(TypeError, match="'b' has dtype float64 in the source but float32"):
        core.utils.port_variables(double, dst)


def test_check_helpers_messages():
    lin = core.Linear(2, name="head")
    with pytest.raises(ValueError, match=r"Linear 'head': expected x of rank 3 \[b, t, d\], got shape \(2, 2\)"):
        core.utils.check_rank(lin, tf.ones([2, 2]), 3, what="x", layout="[b, t, d]")
    with pytest.raises(ValueError, match=r"expected inputs with channels 4 on axis 1, got shape \(2, 3\)"):
        core.utils.check_size(lin, tf.ones([2, 3]), 1, 4, meaning="channels")
    core.utils.check_size(lin, tf.TensorSpec([None, None]), 1, 4)  # unknown sizes pass


def _train_once(seed):
    core.utils.set_seed(seed)
    lin = core.Linear(4)
    x = tf.random.normal([3, 5])
    noise = tf.random.get_global_generator().normal([3, 4])
    return lin(x).numpy() + noise.numpy(), np.random.rand(), __import__("random").random()


def test_set_seed_makes_runs_reproducible():
    a, b, c = _train_once(11), _train_once(11), _train_once(12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(TypeError, match="set_seed takes an integer"):
        core.utils.set_seed(1.5)


def test_is_int_takes_python_and_numpy_integers_but_not_bools():
    assert utils.is_int(3) and utils.is_int(np.int64(3))
    assert not any(utils.is_int(v) for v in (True, np.bool_(True), 3.0, "3", None))


@pytest.mark.parametrize(
    "data_format,index",
    [
        ("channels_last", -1),
        ("NHWC", -1),
        ("NWC", -1),
        ("BTD", -1),
        ("TBHWD", -1),
        ("channels_first", 1),
        ("NCHW", 1),
        ("NCW", 1),
        ("HWNC", None),
        ("NCHWC", None),
        (None, None),
    ],
)
def test_channel_index_reads_the_data_format(data_format, index):
    assert utils.channel_index(data_format) == index


def test_flag_takes_bools_and_boolean_scalar_tensors_only():
    module = core.Linear(2, name="probe")
    assert utils.flag(module, np.bool_(False), "is_training") is False
    assert utils.flag(module, np.array(True), "is_training") is True
    tensor = tf.constant(True)
    assert utils.flag(module, tensor, "is_training") is tensor
    with pytest.raises(TypeError, match=r"Linear 'probe': is_training must be a boolean scalar, got dtype bool"):
        utils.flag(module, tf.constant([True, False]), "is_training")
    with pytest.raises(TypeError, match=r"Linear 'probe': mode must be a bool or a boolean scalar tensor, got 'no'"):
        utils.flag(module, "no", "mode")


def test_positive_int_returns_an_int_or_names_the_argument():
    module = core.Linear(2, name="probe")
    assert utils.positive_int(module, np.int32(4), "size") == 4
    assert type(utils.positive_int(module, np.int32(4), "size")) is int
    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=r"Linear 'probe': size must be a positive int, got "):
            utils.positive_int(module, bad, "size")
