"""The side-by-side runner: alternating processes, paired ratios, clear failures, our worker."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from benchmarks import side_by_side
from benchmarks.peers import protocol

# A stand-in for one side's process: sleeps-free, it reports the per-step time given on its
# command line (scaled by a per-pair load factor read from a file) and logs its name.
FAKE_SIDE = """
import json, sys
name, seconds, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
with open(log, "a") as f:
    f.write(name + "\\n")
with open(log) as f:
    calls = sum(1 for _ in f)
load = 1.0 + calls  # the machine gets busier with every process
print("noise that is not JSON")
record = {"side": name, "per_step_s": seconds * load}
if name != "no_cpu":
    record["cpu_per_step_s"] = seconds / 2  # the work itself, whatever the load
print(json.dumps(record))
"""


def _sides(tmp_path, times):
    script = tmp_path / "side.py"
    script.write_text(FAKE_SIDE)
    log = tmp_path / "order.log"
    return {name: [sys.executable, str(script), name, str(t), str(log)] for name, t in times.items()}, log


def test_compare_rotates_the_order_and_pairs_the_ratios(tmp_path):
    sides, log = _sides(tmp_path, {"ours_function": 2.0, "ours_xla": 1.0, "peer": 4.0})
    result = side_by_side.compare(sides, "peer", pairs=3)
    order = log.read_text().split()
    assert order == [
        "ours_function", "ours_xla", "peer",
        "ours_xla", "peer", "ours_function",
        "peer", "ours_function", "ours_xla",
    ]  # fmt: skip
    # Each ratio uses the processes of one pair; the load grows between processes, so
    # the ratios vary around the true one (0.5 and 0.25), and the median is over pairs.
    loads = {name: [1.0 + 1 + i for i, n in enumerate(order) if n == name] for name in sides}
    for name, truth in (("ours_function", 0.5), ("ours_xla", 0.25)):
        values = [truth * a / b for a, b in zip(loads[name], loads["peer"])]
        r = result["ratios"][name]
        assert r["values"] == pytest.approx(values)
        assert r["median"] == pytest.approx(sorted(values)[1])
        assert (r["min"], r["max"], r["n"]) == (pytest.approx(min(values)), pytest.approx(max(values)), 3)
        assert r["low"] <= r["median"] <= r["high"]
    assert "peer" not in result["ratios"]
    assert len(result["pairs"]) == 3 and set(result["pairs"][0]) == set(sides)
    # CPU times do not grow with the load here: their ratios are the true ones in every pair.
    for name, truth in (("ours_function", 0.5), ("ours_xla", 0.25)):
        assert result["cpu_ratios"][name]["values"] == pytest.approx([truth] * 3)
    assert result["cpu_per_step_s"] == pytest.approx({"ours_function": 1.0, "ours_xla": 0.5, "peer": 2.0})
    table = side_by_side._table(dict(result, peer="peer", workload="w", config={}))
    assert "| ours_xla | 500.0 | 0.250 [" in table and "CPU time" in table


def test_compare_gives_cpu_ratios_only_when_every_process_reports_cpu_time(tmp_path):
    sides, _ = _sides(tmp_path, {"ours_function": 2.0, "no_cpu": 1.0, "peer": 4.0})
    result = side_by_side.compare(sides, "peer", pairs=1)
    assert set(result["ratios"]) == {"ours_function", "no_cpu"}
    assert "cpu_ratios" not in result and "cpu_per_step_s" not in result


def test_compare_names_a_failing_process_and_its_stderr(tmp_path):
    sides, _ = _sides(tmp_path, {"ours": 1.0})
    sides["peer"] = [sys.executable, "-c", "import sys; sys.exit('no module named torch')"]
    with pytest.raises(RuntimeError, match=r"exit code 1, no result from: .* -c .*\n.*no module named torch"):
        side_by_side.compare(sides, "peer", pairs=1)


def test_compare_checks_its_arguments(tmp_path):
    sides, _ = _sides(tmp_path, {"ours": 1.0, "peer": 1.0})
    with pytest.raises(ValueError, match="pairs must be at least 1"):
        side_by_side.compare(sides, "peer", pairs=0)
    with pytest.raises(ValueError, match="need the peer 'other'"):
        side_by_side.compare(sides, "other", pairs=1)


def test_our_worker_prints_one_json_line_of_timings(capsys):
    config = {"batch": 2, "steps": 3, "inputs": 6, "outputs": 5, "hidden": 8, "memory": 6, "word": 4, "reads": 2}
    side_by_side.worker(["dnc", "--mode", "function", "--config", json.dumps(config), "--steps", "2", "--warmup", "0"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["side"] == "ours_function" and record["config"] == config and record["step"] == "train"
    assert len(record["times_s"]) == 2 and record["per_step_s"] > 0 and record["first_call_s"] > 0
    assert len(record["cpu_times_s"]) == 2 and record["cpu_per_step_s"] > 0
    assert record["versions"]["tensorflow"]


def test_protocol_rejects_bad_arguments(capsys):
    for argv, message in [
        (["--config", "{"], "--config is not JSON"),
        (["--config", "[1]"], "--config must be a JSON object"),
        (["--config", "{}", "--steps", "0"], "--steps must be at least 1"),
    ]:
        with pytest.raises(SystemExit):
            protocol.parse("test", argv)
        assert message in capsys.readouterr().err


def test_cli_requires_a_known_peer_and_its_python(capsys, monkeypatch):
    monkeypatch.delenv("PEER_PYTHON", raising=False)
    with pytest.raises(SystemExit):
        side_by_side.main(["dnc", "--peer", "nobody"])
    assert "--peer must be one of pytorch_dnc" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        side_by_side.main(["dnc", "--peer", "pytorch_dnc"])
    err = capsys.readouterr().err
    assert "--peer-python" in err and "pip install --no-deps dnc" in err
    with pytest.raises(SystemExit):
        side_by_side.main(["dnc", "--peer", "pytorch_dnc", "--peer-python", "python3", "--config", '{"size": 3}'])
    assert "--config has keys ['size']" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed in this venv")
def test_a_peer_without_its_package_says_how_to_install_it():
    script = os.path.join(side_by_side.PEERS_DIR, "pytorch_dnc.py")
    done = subprocess.run([sys.executable, script, "--config", "{}"], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "cannot import torch" in done.stderr and "pip install --no-deps dnc" in done.stderr


@pytest.mark.skipif(not os.environ.get("PEER_PYTHON"), reason="set PEER_PYTHON to a venv with torch and dnc")
def test_the_pytorch_dnc_peer_runs_at_the_smoke_size():
    config = {"batch": 2, "steps": 3, "inputs": 6, "outputs": 5, "hidden": 8, "memory": 6, "word": 4, "reads": 2}
    script = os.path.join(side_by_side.PEERS_DIR, "pytorch_dnc.py")
    record = side_by_side._run(
        [os.environ["PEER_PYTHON"], script, "--config", json.dumps(config), "--steps", "2", "--warmup", "0"], 300
    )
    assert record["side"] == "pytorch_dnc" and len(record["times_s"]) == 2 and record["versions"]["dnc"]
