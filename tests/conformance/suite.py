"""The shared conformance checks, run over the entries of whichever test module imports them.

A test module joins by importing every check and naming its entries:

    from tests.conformance.suite import *  # noqa: F403 (the shared checks, over ENTRIES)

    ENTRIES = [Entry("DNC", dnc.DNC, ...), ...]
    PUBLIC_MODULES = registry.module_classes_in("models.dnc")

`tests/conftest.py` parametrizes every check's `entry` argument over that module's
`ENTRIES`; `PUBLIC_MODULES` is what `test_every_public_module_has_an_entry` requires an
entry for; each module's checked-in variable list is `variables.json` beside it
(`python -m tests.conformance.variables <test module>` rewrites it). The core's entries
run from `tests/conformance/test_conformance.py`, each model's from
`tests/models/<model>/test_conformance.py`, so the core's suite imports no model.
"""

import copy
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import core
from tests.conformance.registry import Entry

# What `from tests.conformance.suite import *` brings: the checks, nothing else.
__all__ = [
    "test_every_public_module_has_an_entry",
    "test_entry_names_are_unique",
    "test_eager_function_and_xla_agree",
    "test_checkpoint_round_trip",
    "test_saved_model_round_trip",
    "test_mirrored_train_step_keeps_replicas_equal",
    "test_deepcopy",
    "test_variable_names_and_shapes",
]

# --- helpers ------------------------------------------------------------------------


def variables_file(test_module) -> str:
    """The checked-in variable list of a test module's entries: variables.json beside it."""
    return os.path.join(os.path.dirname(test_module.__file__), "variables.json")


def tensors(structure):
    return tf.nest.map_structure(tf.convert_to_tensor, structure)


def numpy(structure):
    return [np.asarray(t) for t in tf.nest.flatten(structure)]


def state(module):
    return [v.numpy() for v in module.variables]


def restore_state(module, values):
    for v, value in zip(module.variables, values):
        v.assign(value)


def assert_all_close(actual, expected, rtol, what):
    """Agreement within `rtol` relative to each tensor's largest magnitude."""
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected)):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{what} #{i}: shape {a.shape} vs {e.shape}"
        if e.dtype.kind in "fc":
            scale = max(float(np.max(np.abs(e))), 1e-30) if e.size else 1.0
            np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * scale, err_msg=f"{what} #{i}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{what} #{i}")


def skip_if(entry: Entry, test: str):
    if test in entry.skip:
        pytest.skip(entry.skip[test])


def build(entry: Entry, seed: int = 0):
    """A fresh module, built by one inference call on the entry's inputs."""
    module = entry.make()
    inputs = tensors(entry.inputs(np.random.RandomState(seed)))
    entry.forward(module, inputs, False)
    return module, inputs


def float_loss(outputs):
    parts = [tf.reduce_sum(tf.square(tf.cast(t, tf.float32))) for t in tf.nest.flatten(outputs) if t.dtype.is_floating]
    return tf.add_n(parts) if parts else tf.constant(0.0)


def describe_variables(module):
    return [
        f"{v.name} {v.shape.as_list()} {v.dtype.name} {'trainable' if v.trainable else 'state'}"
        for v in module.variables
    ]


# --- tests --------------------------------------------------------------------------


def test_every_public_module_has_an_entry(request):
    covered = {e.cls for e in request.module.ENTRIES}
    missing = sorted(c.__name__ for c in set(request.module.PUBLIC_MODULES) - covered)
    assert not missing, f"public modules without a conformance entry: {missing}"


def test_entry_names_are_unique(request):
    names = [e.name for e in request.module.ENTRIES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("is_training", [False, True], ids=["infer", "train"])
def test_eager_function_and_xla_agree(entry, is_training):
    skip_if(entry, "modes")
    if is_training:
        skip_if(entry, "modes_train")
    module, inputs = build(entry)
    start = state(module)
    fn = lambda *args: entry.forward(module, args, is_training)  # noqa: E731
    results = {}
    for mode, run in [
        ("eager", fn),
        ("function", tf.function(fn)),
        ("xla", tf.function(fn, jit_compile=True)),
    ]:
        if mode == "xla":
            skip_if(entry, "xla")
        restore_state(module, start)
        outputs = run(*inputs)
        results[mode] = (numpy(outputs), state(module))
    ref_out, ref_state = results["eager"]
    for mode, (out, after) in results.items():
        assert_all_close(out, ref_out, entry.rtol, f"{entry.name} {mode} outputs")
        assert_all_close(after, ref_state, entry.rtol, f"{entry.name} {mode} state after the call")


def test_checkpoint_round_trip(entry, tmp_path):
    skip_if(entry, "checkpoint")
    module, inputs = build(entry)
    if "modes_train" not in entry.skip:
        entry.forward(module, inputs, True)  # move any running state away from its initial value
    expected = numpy(entry.forward(module, inputs, False))
    saved = state(module)
    path = tf.train.Checkpoint(module=module).write(str(tmp_path / "ckpt"))

    # Restore into a built module.
    built, _ = build(entry, seed=1)
    tf.train.Checkpoint(module=built).read(path).assert_consumed()
    assert_all_close(state(built), saved, 0.0, "restored state")
    assert_all_close(numpy(entry.forward(built, inputs, False)), expected, 1e-6, "restored outputs")

    # Restore before the variables exist: they take the saved values when created.
    fresh = entry.make()
    status = tf.train.Checkpoint(module=fresh).read(path)
    outputs = entry.forward(fresh, inputs, False)
    status.assert_consumed()
    assert_all_close(state(fresh), saved, 0.0, "deferred-restored state")
    assert_all_close(numpy(outputs), expected, 1e-6, "deferred-restored outputs")


def test_saved_model_round_trip(entry, tmp_path):
    skip_if(entry, "saved_model")
    module, inputs = build(entry)
    expected = numpy(entry.forward(module, inputs, False))
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), list(inputs))
    wrapper = tf.Module()
    wrapper.module = module
    wrapper.infer = tf.function(lambda *args: entry.forward(module, args, False), input_signature=specs)
    tf.saved_model.save(wrapper, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    assert_all_close(numpy(loaded.infer(*inputs)), expected, 1e-6, "reloaded outputs")


def uneven_inputs(entry: Entry, replica: int):
    """The entry's inputs for one replica, with one more example on odd replicas.

    The extra example is the first of a second draw, appended along the leading axis of
    every input, so replicas get batches of n, n + 1, n, n + 1.
    """
    inputs = entry.inputs(np.random.RandomState(100 + replica))
    if replica % 2 == 0:
        return inputs
    extra = entry.inputs(np.random.RandomState(200 + replica))
    return tf.nest.map_structure(lambda a, b: np.concatenate([a, b[:1]]), inputs, extra)


def is_batched(entry: Entry) -> bool:
    """Whether the inputs share a batch axis: a built module must take another leading size."""
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in tf.nest.flatten(entry.inputs(np.random.RandomState(0)))}
    if len(sizes) != 1 or None in sizes:
        return False
    module, _ = build(entry)
    try:
        entry.forward(module, tensors(uneven_inputs(entry, 1)), False)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError):
        return False
    return True


def run_mirrored_train_step(entry: Entry, mirrored, per_replica):
    """Two traced train steps of a module built under `mirrored`, each replica on its own inputs."""
    with mirrored.scope():
        module = entry.make()
    per_replica = [tensors(x) for x in per_replica]
    dist_inputs = mirrored.experimental_distribute_values_from_function(
        lambda ctx: per_replica[ctx.replica_id_in_sync_group]
    )

    # Variables are built by an eager call before the traced step: TensorFlow cannot
    # create variables in the first trace of a function that also all-reduces.
    mirrored.run(lambda *x: entry.forward(module, x, False), args=dist_inputs)

    def replica_step(*inputs):
        if entry.updates_itself:
            return entry.forward(module, inputs, True)
        with tf.GradientTape() as tape:
            outputs = entry.forward(module, inputs, True)
            loss = float_loss(outputs)
        params = module.trainable_variables
        grads = core.distribute.all_reduce_gradients(tape.gradient(loss, params))
        for v, g in zip(params, grads):
            if isinstance(g, tf.IndexedSlices):
                v.scatter_sub(tf.IndexedSlices(0.01 * g.values, g.indices, g.dense_shape))
            elif g is not None:
                v.assign_sub(0.01 * g)
        return outputs

    step = tf.function(lambda x: mirrored.run(replica_step, args=x))
    first = step(dist_inputs)
    start = [[c.numpy() for c in mirrored.experimental_local_results(v)] for v in module.variables]
    step(dist_inputs)

    changed = False
    for v, before in zip(module.variables, start):
        copies = [c.numpy() for c in mirrored.experimental_local_results(v)]
        assert len(copies) == mirrored.num_replicas_in_sync, v.name
        for i, c in enumerate(copies[1:], 1):
            np.testing.assert_array_equal(c, copies[0], err_msg=f"{entry.name}: {v.name} differs on replica {i}")
        changed |= not np.array_equal(copies[0], before[0])
    if module.trainable_variables or entry.updates_itself:
        assert changed, f"{entry.name}: the train step changed no variable"
    # Different data really reached the replicas.
    outs = [numpy(o) for o in mirrored.experimental_local_results(first)]
    if outs[0]:
        assert not all(np.array_equal(outs[0][0], o[0]) for o in outs[1:]), "replicas saw the same data"


def test_mirrored_train_step_keeps_replicas_equal(entry, mirrored):
    """Replicas on different data stay equal; with uneven batches where the inputs have one.

    The last batch of an epoch splits unevenly, and state must stay in sync anyway. Even
    batches are the easier case of the same check, so a batched entry runs only the uneven one.
    """
    skip_if(entry, "mirrored")
    replicas = range(mirrored.num_replicas_in_sync)
    if is_batched(entry):
        per_replica = [uneven_inputs(entry, i) for i in replicas]
    else:
        per_replica = [entry.inputs(np.random.RandomState(100 + i)) for i in replicas]
    run_mirrored_train_step(entry, mirrored, per_replica)


def test_deepcopy(entry):
    skip_if(entry, "deepcopy")
    module, inputs = build(entry)
    clone = copy.deepcopy(module)
    assert [v.name for v in clone.variables] == [v.name for v in module.variables]
    assert_all_close(state(clone), state(module), 0.0, "copied state")
    assert_all_close(
        numpy(entry.forward(clone, inputs, False)), numpy(entry.forward(module, inputs, False)), 1e-6, "copy outputs"
    )
    before = state(module)
    for v in clone.variables:
        assert all(v is not w for w in module.variables), f"{v.name} is shared with the original"
        if v.dtype.is_floating:
            v.assign_add(tf.ones_like(v))
    assert_all_close(state(module), before, 0.0, "original after changing the copy")


def test_variable_names_and_shapes(entry, request):
    eager, _ = build(entry)
    listed = describe_variables(eager)
    path = variables_file(request.module)
    with open(path) as f:
        golden = json.load(f)
    assert entry.name in golden, (
        f"{entry.name} is not in {path}; "
        f"regenerate it with `python -m tests.conformance.variables {request.module.__name__}`"
    )
    assert listed == golden[entry.name]

    # Variables created while tracing a tf.function get the same names.
    traced = entry.make()
    inputs = tensors(entry.inputs(np.random.RandomState(0)))
    tf.function(lambda *args: entry.forward(traced, args, False))(*inputs)
    assert describe_variables(traced) == listed
