"""The torch-gqn peer script: what it says without a clone, and a run where the peer is installed."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import side_by_side

SCRIPT = os.path.join(side_by_side.PEERS_DIR, "torch_gqn.py")
# torch-gqn's fixed sizes at its smallest step: one example, one drawing step.
CONFIG = dict(batch=1, views=1, image=64, steps=1, shared=True, representation="pool", r_channels=256, hidden=128, z=3)


def test_the_peer_is_registered_against_the_gqn_workload():
    peer = side_by_side.PEERS["torch_gqn"]
    assert peer.workload == "gqn" and peer.script == "torch_gqn.py" and "--peer-dir" in peer.install


def test_without_a_clone_it_says_how_to_get_one(tmp_path):
    argv = [sys.executable, SCRIPT, "--config", json.dumps(CONFIG), "--peer-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "--peer-dir must be a clone of torch-gqn" in done.stderr and "git clone" in done.stderr


def test_sizes_torch_gqn_cannot_run_are_refused(tmp_path):
    (tmp_path / "model.py").write_text("")
    config = dict(CONFIG, image=32)
    argv = [sys.executable, SCRIPT, "--config", json.dumps(config), "--peer-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "sizes are fixed" in done.stderr and "'image': 32" in done.stderr


@pytest.mark.skipif(
    not (os.environ.get("PEER_PYTHON") and os.environ.get("TORCH_GQN_DIR")),
    reason="set PEER_PYTHON (a venv with torch) and TORCH_GQN_DIR (a clone of torch-gqn)",
)
def test_the_torch_gqn_peer_runs():
    command = [os.environ["PEER_PYTHON"], SCRIPT, "--config", json.dumps(CONFIG), "--steps", "1", "--warmup", "0"]
    record = side_by_side._run([*command, "--peer-dir", os.environ["TORCH_GQN_DIR"]], 600)
    assert record["side"] == "torch_gqn" and len(record["times_s"]) == 1 and record["parameters"] > 0
