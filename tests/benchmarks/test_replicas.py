"""The train step under the suite's MirroredStrategy (four logical CPUs), in every mode."""

from benchmarks import measure, registry


def _run(name, mirrored):
    settings = measure.Settings.for_preset("smoke", steps=("train",), peers=(), replicas=4)
    return measure.run_workload(registry.select([name])[0], settings, mirrored)["rows"]


def test_replicated_train_step_runs_in_every_mode(mirrored):
    rows = {r["mode"]: r for r in _run("mlp", mirrored)}
    assert set(rows) == {"eager", "function", "xla"}
    for row in rows.values():
        assert row["status"] == "ok", row["error"]
        assert row["replicas"] == 4
        assert row["batch_size"] == 4 * registry.select(["mlp"])[0].size("smoke")["batch"]


def test_xla_cannot_compile_a_replica_that_writes_synchronised_state(mirrored):
    # Batch norm's moving averages are averaged over replicas as they are written: a
    # cross-replica write, which TensorFlow refuses inside the compiled per-replica pass.
    rows = {r["mode"]: r for r in _run("conv_bn", mirrored)}
    assert rows["function"]["status"] == "ok"
    assert rows["xla"]["status"] == "error"
    assert "synchronised across replicas" in rows["xla"]["error"]
