"""The registered workloads: one module per model, and one per core workload (`core_*.py`).

`benchmarks.registry.load()` imports every module in this folder, so a model's
workloads appear in `python -m benchmarks.run` and `pytest benchmarks` as soon as its
file is here. A model adds one file, `benchmarks/workloads/<model>.py`, shaped like:

    import tensorflow as tf

    from benchmarks import cases, registry
    from models.<model> import <model>


    def build(dtype: tf.DType, batch: int, ...) -> registry.Case:
        net = <model>.<Model>(...)          # the modules, from the model folder
        return cases.core_case(
            net,
            batch_size=batch,
            make_inputs=lambda seed: ...,   # a batch: a nest of tensors in `dtype`
            forward=lambda x: net(x, is_training=False),
            train_forward=lambda x: net(x, is_training=True),
        )


    def flops(batch: int, ...) -> registry.Flops:   # only where a loop hides the work
        return registry.Flops(forward=..., train=..., note="what is counted")


    registry.register(registry.Workload(
        name="<model>",                    # a model may register several (its core, its whole net)
        description="...",
        sizes={"smoke": {...}, "quick": {...}, "paper": {...}},  # keyword args of build
        build=build,
        flops=flops,
        recurrent=True,                    # if it unrolls a recurrent core
    ))

Each workload gets a forward step (inference) and a train step (forward, backward,
optimizer update) from the `Case`; the harness times both in eager, `tf.function`
and XLA modes. `cases.core_case` trains with Adam on the mean square of the outputs,
as every workload does, so that the figures compare across workloads and with the
peers; a model's own training setup (optimizer, loss) is its `train.py`'s business.
The `smoke` sizes must run in well under a second per step: the test suite runs
every workload at `smoke` in every mode and checks that the modes agree
and that bfloat16 runs in bfloat16 throughout.
"""

import importlib

# The core's workloads, in the order the tables list them (imported one by one, as an
# import sorter would reorder a single import line); `registry.load()` imports the other
# modules here (one per model) after them, in name order.
CORE = ("core_mlp", "core_lstm", "core_conv", "core_conv_lstm", "core_attention", "core_lstm_ln", "core_gru")
for _name in CORE:
    importlib.import_module(f"{__name__}.{_name}")
