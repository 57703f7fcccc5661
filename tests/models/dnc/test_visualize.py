"""The visualisation command draws a trained run's memory use to a PNG."""

import gin
import numpy as np

from models.dnc import visualize
from tests.models.dnc.test_train import NO_GENERALIZATION, run


def test_draws_a_trained_run(tmp_path):
    run(tmp_path, "train.num_steps=2", "train.eval_every=2", NO_GENERALIZATION)
    out = tmp_path / "dnc.png"
    records = visualize.visualize(str(tmp_path), str(out), seed=1)
    gin.clear_config()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    steps = records["write_weights"].shape[0]
    assert 5 <= steps <= 9  # one unpadded sequence: L (R + 1) + 3 steps
    assert records["read_weights"].shape == (steps, 4, 16) and records["usage"].shape == (steps, 16)
    assert records["free_gate"].shape == (steps, 4)
    # What the figure shows is the model's own state: writes never exceed the write gate.
    assert np.all(records["write_weights"].sum(-1) <= records["write_gate"] + 1e-6)
    assert np.all((records["usage"] >= 0) & (records["usage"] <= 1))
