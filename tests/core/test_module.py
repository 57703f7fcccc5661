"""Module: name scopes, once, no_name_scope, repr, construction errors."""

import copy

import pytest
import tensorflow as tf

import core


class Encoder(core.Module):
    """Two forward methods sharing one lazily created variable."""

    def __init__(self, size, scale=1.0, name=None):
        super().__init__(name=name)
        self.size = size
        self.scale = scale
        self.proj = core.Linear(size, name="proj")  # built in the constructor's scope

    @core.once
    def _initialize(self, x):
        self.w = tf.Variable(tf.ones([x.shape[-1]]), name="w")

    def encode(self, x):
        self._initialize(x)
        return self.proj(x * self.w)

    def decode(self, z):
        return tf.matmul(z, self.proj.w, transpose_b=True) / self.w

    @property
    def scope_seen(self):
        return tf.Variable(0.0, name="from_property").name

    @core.no_name_scope
    def unscoped(self):
        return tf.Variable(0.0, name="free").name


def test_methods_run_in_module_scope():
    enc = Encoder(3, name="enc")
    enc.decode(enc.encode(tf.ones([2, 4])))
    assert sorted(v.name for v in enc.variables) == ["enc/proj/b:0", "enc/proj/w:0", "enc/w:0"]
    assert enc.scope_seen == "enc/from_property:0"
    assert enc.unscoped() == "free:0"


def test_scopes_nest_and_are_legible_in_graphs():
    class Outer(core.Module):
        def __init__(self):
            super().__init__()
            self.inner = Encoder(2)

        def __call__(self, x):
            return self.inner.encode(x)

    outer = Outer()
    tf.function(outer)(tf.ones([1, 3]))
    assert sorted(v.name for v in outer.variables) == [
        "outer/encoder/proj/b:0",
        "outer/encoder/proj/w:0",
        "outer/encoder/w:0",
    ]


def test_once_runs_once_per_instance_and_retries_after_error():
    calls = []

    class Lazy(core.Module):
        @core.once
        def build(self, fail):
            calls.append(self)
            if fail:
                raise RuntimeError("boom")

    a, b = Lazy(), Lazy()
    with pytest.raises(RuntimeError):
        a.build(True)
    a.build(False)
    a.build(False)
    b.build(False)
    assert calls == [a, a, b]


def test_once_on_function_and_return_value_rejected():
    seen = []

    @core.once
    def f():
        seen.append(1)

    f()
    f()
    assert seen == [1]

    @core.once
    def g():
        return 3

    with pytest.raises(ValueError, match="must return None"):  # as snt.once
        g()


def test_deepcopy_keeps_built_state():
    enc = Encoder(3)
    enc.encode(tf.ones([2, 4]))
    clone = copy.deepcopy(enc)
    n = len(clone.variables)
    clone.encode(tf.ones([2, 4]))
    assert len(clone.variables) == n  # not rebuilt


def test_repr_shows_non_default_arguments():
    assert repr(Encoder(3)) == "Encoder(size=3)"
    assert repr(Encoder(3, scale=2.0, name="e")) == "Encoder(size=3, scale=2.0, name='e')"
    assert repr(core.Linear(4, with_bias=False)) == "Linear(output_size=4, with_bias=False)"


def test_missing_super_constructor_is_reported():
    class NoSuper(core.Module):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match=r"NoSuper.__init__ did not call the base constructor"):
        NoSuper()

    class EarlyCall(core.Module):
        def __init__(self):
            self.helper()
            super().__init__()

        def helper(self):
            pass

    with pytest.raises(AttributeError, match="call super"):
        EarlyCall()


def test_invalid_name():
    with pytest.raises(ValueError, match="not a valid module name"):
        core.Linear(2, name="has space")


def test_constructor_scope_closes_on_error():
    class Broken(core.Module):
        def __init__(self):
            super().__init__(name="broken")
            raise ValueError("bad config")

    with pytest.raises(ValueError, match="bad config"):
        Broken()
    # The failed constructor left no scope open behind it.
    assert tf.Variable(0.0, name="after").name == "after:0"


class Traced(core.Module):
    """`tf.function` methods: one creating a variable, one compiled with XLA."""

    def __init__(self, name=None):
        super().__init__(name=name)
        self.proj = core.Linear(2, name="proj")
        self.v = None

    @tf.function
    def forward(self, x):
        if self.v is None:
            self.v = tf.Variable(1.0, name="v")
        if tf.reduce_sum(x) > 0:  # autograph still converts the body
            x = -x
        return self.proj(x) * self.v

    @tf.function
    def double(self, x):
        return 2.0 * x

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def compiled(self, x):
        return self.proj(x)


def test_tf_function_methods_run_in_module_scope():
    m = Traced(name="outer")
    np_out = m.forward(tf.ones([1, 3])).numpy()
    assert sorted(v.name for v in m.variables) == ["outer/proj/b:0", "outer/proj/w:0", "outer/v:0"]
    assert (m.forward(tf.ones([1, 3])).numpy() == np_out).all()
    ops = [op.name for op in m.compiled.get_concrete_function().graph.get_operations()]
    assert any(name.startswith("outer/proj/MatMul") for name in ops), ops


def test_tf_function_methods_trace_once_per_signature():
    m = Traced()
    for shape in ([2], [2], [3], [3]):
        m.double(tf.ones(shape))
    assert m.double.experimental_get_tracing_count() == 2
    assert isinstance(m.double, tf.types.experimental.PolymorphicFunction)


def test_tf_function_methods_keep_jit_compile_and_input_signature():
    m = Traced()
    assert m.compiled.function_spec.jit_compile is True
    assert m.compiled.input_signature == (tf.TensorSpec([None, 3], tf.float32),)
    m.compiled(tf.ones([2, 3]))
    traces = m.compiled.experimental_get_tracing_count()
    m.compiled(tf.ones([4, 3]))  # the signature's None batch: no retrace
    assert m.compiled.experimental_get_tracing_count() == traces
    concrete = m.compiled.get_concrete_function()
    assert concrete.function_def.attr["_XlaMustCompile"].b


def test_no_name_scope_tf_function_is_left_alone():
    class Free(core.Module):
        @core.no_name_scope
        @tf.function(reduce_retracing=True)
        def make(self):
            return tf.Variable(0.0, name="free").name

    # Not rebuilt, so its options (reduce_retracing here) are all kept.
    assert isinstance(vars(Free)["make"], tf.types.experimental.PolymorphicFunction)
    assert vars(Free)["make"].python_function.__name__ == "make"
    assert not hasattr(vars(Free)["make"].python_function, "__wrapped__")


@pytest.mark.parametrize(
    "make,call,message",
    [
        (lambda: core.Linear(3), lambda m, x: m(x), r"Linear 'linear': expected inputs of rank at least 2"),
        (lambda: core.LSTM(4), lambda m, x: m(x, m.initial_state(2)), r"LSTM 'lstm': expected inputs of rank 2"),
        (lambda: core.GRU(4), lambda m, x: m(x, m.initial_state(2)), r"GRU 'gru': expected inputs of rank 2"),
        (
            lambda: core.LayerNorm(-1, True, True),
            lambda m, x: m(x),
            r"LayerNorm 'layer_norm': expected inputs of rank 2",
        ),
    ],
    ids=["Linear", "LSTM", "GRU", "LayerNorm"],
)
def test_inputs_of_unknown_rank_get_the_modules_error(make, call, message):
    """A trace with inputs of unknown rank fails with the module's message, not TensorFlow's
    "Cannot take the length of shape with unknown rank" (without autograph, which would
    otherwise turn the modules' `len` into its own)."""
    module = make()
    call(module, tf.zeros([2, 5]))
    traced = tf.function(lambda x: call(module, x), input_signature=[tf.TensorSpec(None, tf.float32)], autograph=False)
    with pytest.raises(ValueError, match=message):
        traced.get_concrete_function()
