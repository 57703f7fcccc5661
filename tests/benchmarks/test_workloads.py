"""The registry, and every registered workload: modes agree, bfloat16 runs in bfloat16."""

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import cases, flops, measure, registry, steps

NAMES = list(registry.load())
PEERS = [(name, peer) for name in NAMES for peer in sorted(registry.load()[name].peers)]


def _prepare(name: str, dtype: tf.DType = tf.float32, implementation: str = "ours") -> measure.Prepared:
    workload = registry.select([name])[0]
    builder = workload.build if implementation == "ours" else workload.peers[implementation]
    return measure.prepare(builder, workload.size("smoke"), measure.Settings.for_preset("smoke", dtype=dtype))


def _values(variables) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in variables]


def test_the_core_workloads_come_first_in_order():
    assert NAMES[:5] == ["mlp", "lstm", "conv_bn", "conv_lstm", "attention"]


def test_every_workload_has_every_preset_and_a_case_per_peer():
    for workload in registry.select():
        assert set(workload.sizes) == set(registry.PRESETS)
        assert set(workload.peers) <= set(measure.PEER_NAMES)


def test_a_workload_needs_every_preset():
    with pytest.raises(ValueError, match="no sizes for preset"):
        registry.Workload("w", "", {"quick": {}}, build=lambda dtype: None)


def test_names_are_unique_and_unknown_names_are_explained():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.select(["mlp"])[0])
    with pytest.raises(KeyError, match="registered: "):
        registry.select(["no_such_workload"])


def _assert_gradients_agree(got: list[np.ndarray], want: list[np.ndarray], mode: str) -> None:
    """The loss and each gradient agree with eager's, element by element.

    A gradient that is zero in exact arithmetic (a bias that a batch norm subtracts again,
    as BigGAN's convolution biases before its class-conditional batch norms) comes out as
    rounding noise of about float32's epsilon times the gradients flowing past it, and
    that noise differs between kernels. Where eager's gradient is within that noise of
    zero everywhere, the other mode's must be too, rather than equal to the noise.

    Likewise a small element of a large gradient carries the rounding of the large terms
    summed into it: XLA's fused kernels differ from eager's by up to about 2e-6 times the
    largest element of the same gradient (BigGAN at smoke size, 37 gradients), so the
    absolute tolerance is 1e-5 times that largest element (at least 1e-5).
    """
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, err_msg=f"{mode} loss")
    scale = max(float(np.max(np.abs(g))) for g in want[1:] if np.size(g))
    noise = 1e-5 * scale
    for i, (a, b) in enumerate(zip(want[1:], got[1:])):
        if np.size(a) and np.max(np.abs(a)) <= noise:
            assert np.max(np.abs(b)) <= noise, (
                f"{mode} gradient {i}: {np.max(np.abs(b))} where eager's is zero up to {noise}"
            )
        else:
            atol = 1e-5 * max(1.0, float(np.max(np.abs(a)))) if np.size(a) else 1e-5
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=atol, err_msg=f"{mode} gradient {i}")


@pytest.mark.parametrize("name", NAMES)
def test_eager_function_and_xla_agree(name):
    prepared = _prepare(name)
    case, x = prepared.case, prepared.inputs
    start = _values(case.variables())
    results = {}

    def train_step(inputs):
        # The harness's train step (steps.single_device(case, "train", ...)), returning the
        # gradients as well: one trace and one XLA compilation check both.
        loss, grads = case.loss_and_grads(inputs)
        case.apply(grads)
        return loss, grads

    # Without AutoGraph (the workloads need none): it would only multiply the tracing time.
    for mode in steps.MODES:
        outputs = steps.to_host(steps.single_device(case, "forward", mode, autograph=False)(x))
        loss, grads = steps.wrap(train_step, mode, autograph=False)(x)
        results[mode] = outputs, [loss.numpy(), *map(np.asarray, grads)], _values(case.variables())
        for variable, value in zip(case.variables(), start):
            variable.assign(value)
    eager = results["eager"]
    for mode in ("function", "xla"):
        got = results[mode]
        for a, b in zip(eager[0], got[0]):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"{mode} forward")
        _assert_gradients_agree(got[1], eager[1], mode)
        # Adam's first step moves each parameter by about the learning rate times the sign
        # of its gradient, so a gradient within rounding of zero may move either way.
        for a, b in zip(eager[2], got[2]):
            np.testing.assert_allclose(b, a, atol=2.5 * cases.LEARNING_RATE, err_msg=f"{mode} state after a step")


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_runs_in_bfloat16_end_to_end(name):
    prepared = _prepare(name, tf.bfloat16)
    # Parameters are bfloat16. (Some non-trainable state may accumulate in float32 on
    # purpose, as moving averages do: a 0.001 step vanishes in bfloat16's 8-bit mantissa.)
    parameters = [v for v in prepared.case.variables() if v.trainable]
    assert parameters and {v.dtype for v in parameters} == {tf.bfloat16}
    for step in steps.STEPS:
        fn = steps.single_device(prepared.case, step, "function", autograph=False)
        outputs = fn(prepared.inputs)
        assert {o.dtype for o in tf.nest.flatten(outputs) if o.dtype.is_floating} == {tf.bfloat16}
        # Less the spectral norms' power iterations (BigGAN), which core.SpectralNorm runs
        # in float32 for half-precision weights on purpose: matrix-vector products.
        dtypes = flops.compute_dtypes(fn.get_concrete_function(prepared.inputs).graph, skip_scope="spectral_norm/")
        assert dtypes and all(d == ["bfloat16"] for d in dtypes.values()), dtypes


@pytest.mark.parametrize("name,peer", PEERS)
def test_bfloat16_peers_compute_in_bfloat16_where_they_run(name, peer):
    try:
        prepared = _prepare(name, tf.bfloat16, peer)
    except Exception as e:  # noqa: BLE001 -- the harness reports such a peer as an error row
        pytest.skip(f"{peer} cannot run {name} in bfloat16: {type(e).__name__}")
    for step in steps.STEPS:
        fn = steps.single_device(prepared.case, step, "function")
        # Less the spectral norms' power iterations (BigGAN), which core.SpectralNorm runs
        # in float32 for half-precision weights on purpose: matrix-vector products.
        dtypes = flops.compute_dtypes(fn.get_concrete_function(prepared.inputs).graph, skip_scope="spectral_norm/")
        assert dtypes and all(d == ["bfloat16"] for d in dtypes.values()), dtypes
