"""The command line: the smoke preset end to end, the JSON's fields, --compare, --help, bad flags."""

import copy
import json
import os
import subprocess
import sys

import pytest

from benchmarks import allocator, registry, report, run

ROW_FIELDS = {
    "workload",
    "step",
    "mode",
    "implementation",
    "status",
    "error",
    "replicas",
    "batch_size",
    "first_call_s",
    "median_s",
    "q1_s",
    "q3_s",
    "iqr_s",
    "repeats",
    "calls_per_repeat",
    "interleaved",
    "examples_per_s",
    "speedup_vs_eager",
    "speedup_vs_function",
    "flops_per_step",
    "flops_source",
    "flops_per_s",
    "fraction_of_peak",
    "peak_memory_bytes",
    "resident_bytes",
    "step_memory_bytes",
    "memory_note",
    "peers",
}
PEER_FIELDS = {
    "status",
    "error",
    "first_call_s",
    "median_s",
    "q1_s",
    "q3_s",
    "iqr_s",
    "repeats",
    "calls_per_repeat",
    "interleaved",
    "peak_memory_bytes",
    "resident_bytes",
    "step_memory_bytes",
    "memory_note",
    "ours_over_peer",
}
# Figures every successful row has (the ratios where they apply).
MEASURED = [
    "first_call_s",
    "median_s",
    "q1_s",
    "q3_s",
    "examples_per_s",
    "flops_per_step",
    "flops_per_s",
    "fraction_of_peak",
]


@pytest.fixture(autouse=True)
def _allocator_choice_undone(monkeypatch):
    """`run.main` chooses the CPU allocator through the environment: undone after each test."""
    if allocator.BFC_ENV in os.environ:
        monkeypatch.setenv(allocator.BFC_ENV, os.environ[allocator.BFC_ENV])
    else:
        monkeypatch.delenv(allocator.BFC_ENV, raising=False)


# The harness end to end on a dense and a recurrent core workload, each against Sonnet and
# Keras, and on a model (the DNC). Every registered workload runs in every mode, and every
# peer, in tests/benchmarks/test_workloads.py; here each costs tracing and compiling again.
SMOKE_WORKLOADS = ["mlp", "lstm", "dnc"]


def test_the_smoke_preset_end_to_end(tmp_path, capsys):
    result = run.main(["--preset", "smoke", "--workloads", ",".join(SMOKE_WORKLOADS), "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out

    names = SMOKE_WORKLOADS
    assert set(names) <= set(registry.load())
    assert "| workload | step | mode |" in out and "ours/sonnet" in out and "ours/keras" in out
    for name in names:
        assert f"| {name} | train | xla |" in out

    (json_path,) = tmp_path.glob("smoke-float32-r1-*.json")
    (png_path,) = tmp_path.glob("smoke-float32-r1-*.png")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(json_path.read_text())
    assert written == json.loads(json.dumps(result))
    for key in ("command", "started", "wall_s", "load_average", "settings", "peak", "memory", "workloads", "results"):
        assert key in written
    assert written["machine"]["cpu_model"] and written["machine"]["logical_cpus"] >= 1
    assert written["machine"]["tensorflow"] and "commit" in written["machine"]["git"]
    peak = written["peak"]
    calibrated = max(peak["start_flops_per_s"], peak["end_flops_per_s"])
    assert peak["calibrated_flops_per_s"] == calibrated > 0
    assert len(peak["kernels"]["start"]) == len(run.CALIBRATION["smoke"]) >= 2
    assert peak["flops_per_s"] >= calibrated and (peak["raised_by"] is None) == (peak["flops_per_s"] == calibrated)
    # Whether this process has allocator statistics depends on the platform (with oneDNN off,
    # TensorFlow's default CPU allocator keeps none; this test's TensorFlow started without
    # the BFC allocator): the figure is asserted where they exist, the reason where not.
    memory = written["memory"]
    assert memory == {"cpu_allocator": allocator.cpu_allocator(), **allocator.probe()}

    rows = {(r["workload"], r["step"], r["mode"]): r for r in written["results"]}
    assert set(rows) == {(n, s, m) for n in names for s in ("forward", "train") for m in ("eager", "function", "xla")}
    for key, row in rows.items():
        assert set(row) == ROW_FIELDS, key
        assert row["status"] == "ok", (key, row["error"])
        assert all(row[field] is not None for field in MEASURED), key
        assert row["fraction_of_peak"] <= 1.0, key
        if memory["statistics"]:
            assert row["peak_memory_bytes"] is not None and row["memory_note"] is None, key
        else:
            assert row["peak_memory_bytes"] is None and "no allocator statistics on CPU:0" in row["memory_note"]
            assert "n/a*" in out and "* step mem n/a: no allocator statistics on CPU:0" in out
        # An entry too slow for the smoke cap (a loaded machine) is timed once, outside the rounds.
        assert row["repeats"] >= 2 if row["interleaved"] else row["repeats"] == 1, key
        assert (row["speedup_vs_eager"] is None) == (row["mode"] == "eager")
        assert (row["speedup_vs_function"] is None) == (row["mode"] != "xla")
        workload = registry.select([row["workload"]])[0]
        expected_peers = set(workload.peers) if row["mode"] == "function" else set()
        assert set(row["peers"]) == expected_peers, key
        for peer, figures in row["peers"].items():
            assert set(figures) == PEER_FIELDS, (key, peer)
            assert figures["status"] == "ok", (key, peer, figures["error"])
            assert set(figures["ours_over_peer"]) == {"median", "low", "high", "n"}
    for workload in written["workloads"]:
        for step in ("forward", "train"):
            counts = workload["flops"][step]
            assert counts["used"] > 0 and counts["source"] in ("graph", "analytic")
            assert counts["compute_dtypes"] and all(d == ["float32"] for d in counts["compute_dtypes"].values())

    # --compare: a later run that is twice as slow everywhere.
    slower = copy.deepcopy(written)
    for row in slower["results"]:
        row["median_s"] *= 2
    table = report.compare(written, slower)
    assert table.count("+100.0%") == len(rows)


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in run.parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--modes", "eager,jit"], "unknown mode jit"),
        (["--workloads", "no_such"], "unknown workload"),
        (["--replicas", "0"], "must be positive"),
        (["--dtype", "float16"], "invalid choice"),
        (["--preset", "huge"], "invalid choice"),
        (["--min-repeats", "9", "--max-repeats", "3"], "more than --max-repeats"),
        (["--modes", "eager", "--peer-modes", "function"], "no mode in --modes"),
        (["--compare", "/no/such.json"], "no such file"),
        (["--cpu-allocator", "tcmalloc"], "invalid choice"),
        (["--out-dir", "/proc/no_such_dir"], "--out-dir '/proc/no_such_dir': cannot write there"),
    ],
)
def test_bad_flags_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _refuse_to_run(*args, **kwargs):
    raise AssertionError("the run started before the flags were checked")


@pytest.mark.parametrize("case", ["file", "read_only", "not_json", "not_a_result"])
def test_bad_out_dir_and_compare_files_fail_before_anything_is_timed(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "run", _refuse_to_run)
    monkeypatch.setattr(run.flops, "measure_peak", _refuse_to_run)
    out_dir, argv = tmp_path / "out", ["--preset", "smoke"]
    if case == "file":
        out_dir.write_text("")
        message = f"--out-dir '{out_dir}': cannot write there (it is not a directory)"
    elif case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        out_dir.mkdir()
        out_dir.chmod(0o500)
        message = f"--out-dir '{out_dir}': cannot write there (Permission denied)"
    else:
        bad = tmp_path / "old.json"
        bad.write_text("{" if case == "not_json" else json.dumps({"rows": []}))
        argv += ["--compare", str(bad)]
        message = "cannot read" if case == "not_json" else "is not a result of python -m benchmarks.run"
    with pytest.raises(SystemExit) as exit_info:
        run.main([*argv, "--out-dir", str(out_dir)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.onednn
def test_a_fresh_harness_process_reads_memory_on_every_cpu(tmp_path):
    """`python -m benchmarks.run` chooses the BFC allocator before TensorFlow starts: statistics
    of every allocation, with oneDNN off or on (CI runs this both ways)."""
    env = {k: v for k, v in os.environ.items() if k != allocator.BFC_ENV}
    command = [sys.executable, "-m", "benchmarks.run", "--preset", "smoke", "--workloads", "mlp"]
    command += ["--steps", "forward", "--modes", "function", "--peers", "none", "--out-dir", str(tmp_path)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    assert result["memory"]["cpu_allocator"] == "bfc" and result["memory"]["statistics"]
    assert result["memory"]["smallest_counted_bytes"] <= 1024  # no 256 KiB floor
    (row,) = result["results"]
    assert row["peak_memory_bytes"] > 0 and row["step_memory_bytes"] > 0 and row["memory_note"] is None
    assert "every allocation counted" in done.stdout


def test_list_shows_every_workload_and_preset(capsys):
    assert run.main(["--list", "--out-dir", "/proc/no_such_dir"]) is None  # --list writes nothing
    out = capsys.readouterr().out
    for name in registry.load():
        assert f"{name}: " in out
    assert out.count("smoke: ") == len(registry.load())
