"""CrossReplicaBatchNorm under MultiWorkerMirroredStrategy: two worker processes on localhost.

The test starts two copies of this file as workers (`python -m ... worker`), each with its
own TF_CONFIG. Each worker feeds its own, differently sized part of the batch and checks
its outputs, its input gradients and the moving statistics against batch norm of the
whole batch in float64 NumPy. A hang fails the test after TIMEOUT seconds.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

TIMEOUT = 240  # seconds for both workers together; they normally need about 15
SIZES = (5, 3)  # each worker's batch
REST = (2, 2, 3)  # NHWC
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_match_batch_norm_of_the_whole_batch():
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(len(SIZES))]}
    procs = []
    for index in range(len(SIZES)):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.core.test_cross_replica_batch_norm_multi_worker", "worker"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    deadline = time.monotonic() + TIMEOUT
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the workers did not finish within {TIMEOUT} s (a collective hung?)") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for index, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0 and "WORKER OK" in log, f"worker {index} failed:\n{log[-4000:]}"


def worker() -> None:
    import tensorflow as tf

    import core
    from tests.core.test_cross_replica_batch_norm import DECAY, TOL, loss_weights, moving_reference, reference

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == len(SIZES)
    me = strategy.cluster_resolver.task_id
    with strategy.scope():
        bn = core.CrossReplicaBatchNorm(True, True, decay_rate=DECAY)

    def distribute(values):
        return strategy.experimental_distribute_values_from_function(lambda ctx: values[ctx.replica_id_in_sync_group])

    def replica_fn(x, w):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = bn(x, is_training=True)
            loss = tf.reduce_sum(y * w)
        return y, tape.gradient(loss, x)

    step = tf.function(lambda x, w: strategy.run(replica_fn, args=(x, w)))
    rng = np.random.RandomState(0)  # the same on both workers: each takes its own part
    refs = []
    for i in range(2):
        xs = [rng.normal(2.0 * r, 1.0 + r, size=(n, *REST)).astype(np.float32) for r, n in enumerate(SIZES)]
        ws = [loss_weights(x.shape, start=100 * r) for r, x in enumerate(xs)]
        if i == 0:
            strategy.run(lambda x: bn(x, is_training=False), args=(distribute(xs),))
        y, grad = step(distribute(xs), distribute(ws))
        ref = reference(np.concatenate(xs), np.concatenate(ws), -1)
        refs.append(ref)
        mine = slice(sum(SIZES[:me]), sum(SIZES[: me + 1]))
        np.testing.assert_allclose(y.numpy(), ref["y"][mine], rtol=TOL, atol=TOL)
        np.testing.assert_allclose(grad.numpy(), ref["grad"][mine], rtol=TOL, atol=TOL)
    mean, var = moving_reference(refs, unbiased=True)
    np.testing.assert_allclose(bn.moving_mean.value.numpy(), mean, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(bn.moving_variance.value.numpy(), var, rtol=TOL, atol=TOL)
    print("WORKER OK", flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()
