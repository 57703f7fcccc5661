"""core.distribute: gradient all-reduce, state variables, logical CPUs."""

import types

import numpy as np
import pytest
import tensorflow as tf

import core
from core import distribute


def _run(strategy, fn, per_replica):
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: per_replica[ctx.replica_id_in_sync_group]
    )
    return strategy.experimental_local_results(tf.function(lambda v: strategy.run(fn, args=(v,)))(values))


def test_all_reduce_gradients_keeps_none_and_reduces_the_rest(mirrored):
    n = mirrored.num_replicas_in_sync
    data = [tf.constant([float(i), 2.0 * i]) for i in range(n)]

    def fn(x):
        dense = core.distribute.all_reduce_gradients([None, x, None, 3.0 * x])
        total = core.distribute.all_reduce_gradients([x], reduce_op="sum")
        assert dense[0] is None and dense[2] is None
        return dense[1], dense[3], total[0]

    results = _run(mirrored, fn, data)
    mean = np.mean([d.numpy() for d in data], axis=0)
    for mean_x, mean_3x, total in results:
        np.testing.assert_allclose(mean_x.numpy(), mean)
        np.testing.assert_allclose(mean_3x.numpy(), 3 * mean)
        np.testing.assert_allclose(total.numpy(), n * mean)


def test_all_reduce_gradients_sparse(mirrored):
    n = mirrored.num_replicas_in_sync
    data = [tf.constant([float(i + 1)]) for i in range(n)]

    def fn(x):
        g = tf.IndexedSlices(tf.reshape(x, [1, 1]) * tf.ones([1, 2]), tf.constant([1]), tf.constant([3, 2]))
        (r,) = core.distribute.all_reduce_gradients([g], reduce_op="sum")
        return tf.convert_to_tensor(r)

    for dense in _run(mirrored, fn, data):
        expected = np.zeros([3, 2])
        expected[1] = sum(range(1, n + 1))
        np.testing.assert_allclose(dense.numpy(), expected)


def test_all_reduce_gradients_without_strategy_is_identity():
    g = [tf.ones([2]), None]
    assert core.distribute.all_reduce_gradients(g)[0] is g[0]
    assert core.distribute.all_reduce_gradients([None]) == [None]


def test_all_reduce_gradients_errors(mirrored):
    with pytest.raises(ValueError, match="reduce_op must be 'mean' or 'sum'"):
        core.distribute.all_reduce_gradients([], reduce_op="max")
    with mirrored.scope():
        with pytest.raises(RuntimeError, match="must be called inside strategy.run"):
            core.distribute.all_reduce_gradients([tf.ones([1])])


@pytest.mark.parametrize("aggregation,expected", [("mean", 2.5), ("first", 1.0)])
def test_state_variable_keeps_replicas_in_sync(mirrored, aggregation, expected):
    with mirrored.scope():
        v = core.distribute.state_variable(0.0, name="s", aggregation=aggregation)
    assert not v.trainable
    data = [tf.constant(float(i + 1)) for i in range(mirrored.num_replicas_in_sync)]
    _run(mirrored, lambda x: tf.identity(v.assign_add(x)), data)
    assert [c.numpy() for c in mirrored.experimental_local_results(v)] == [expected] * 4


def test_state_variable_none_aggregation_is_replica_local(mirrored):
    # "none" does no communication: replicas writing different values diverge, which is
    # why it is reserved for state computed from already-synchronised values.
    with mirrored.scope():
        v = core.distribute.state_variable(0.0, name="s", aggregation="none")
    data = [tf.constant(float(i + 1)) for i in range(mirrored.num_replicas_in_sync)]
    _run(mirrored, lambda x: tf.identity(v.assign_add(x)), data)
    assert [c.numpy() for c in mirrored.experimental_local_results(v)] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="aggregation must be one of"):
        core.distribute.state_variable(0.0, name="s", aggregation="sum")


def test_logical_cpus():
    assert core.distribute.logical_cpus(2) == [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    with pytest.raises(RuntimeError, match="already initialised 4 CPU device"):
        core.distribute.logical_cpus(8)
    with pytest.raises(ValueError, match="count >= 1"):
        core.distribute.logical_cpus(0)
    assert core.distribute.num_replicas() == 1


def test_make_strategy_by_name():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    two = distribute.make_strategy("mirrored", replicas=2)  # the suite's logical CPUs
    assert isinstance(two, tf.distribute.MirroredStrategy) and two.num_replicas_in_sync == 2
    assert distribute.is_chief(two)
    assert distribute.worker_dir(two, "/runs/a") == "/runs/a"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="horovod"), "strategy must be one of default, mirrored, multi_worker, tpu; got 'horovod'"),
        (dict(name="mirrored", replicas=-1), "replicas must be a non-negative integer, got -1"),
        (dict(name="default", replicas=2), "replicas=2 splits the CPU for the mirrored strategy only"),
        (dict(name="mirrored", tpu="grpc://x"), "a TPU address .* goes with the tpu strategy only"),
    ],
)
def test_make_strategy_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distribute.make_strategy(**kwargs)


def test_make_strategy_multi_worker_needs_a_cluster(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker", "index": 0}}')
    with pytest.raises(ValueError, match="TF_CONFIG names no cluster"):
        distribute.make_strategy("multi_worker")


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
    ],
)
def test_the_chief_writes_and_the_others_write_apart(cluster, task_type, task_id, chief):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    assert distribute.is_chief(strategy) == chief
    expected = "/runs/a" if chief else f"/runs/a/workers/{task_type}_{task_id}"
    assert distribute.worker_dir(strategy, "/runs/a") == expected
