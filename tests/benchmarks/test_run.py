"""The command line: the smoke preset end to end, the JSON's fields, --compare, --help, bad flags."""

import copy
import json

import pytest

from benchmarks import registry, report, run

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
    "peak_memory_bytes",
]


def test_the_smoke_preset_end_to_end(tmp_path, capsys):
    result = run.main(["--preset", "smoke", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out

    names = list(registry.load())
    assert "| workload | step | mode |" in out and "ours/sonnet" in out and "ours/keras" in out
    for name in names:
        assert f"| {name} | train | xla |" in out

    (json_path,) = tmp_path.glob("smoke-float32-r1-*.json")
    (png_path,) = tmp_path.glob("smoke-float32-r1-*.png")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(json_path.read_text())
    assert written == json.loads(json.dumps(result))
    for key in ("command", "started", "wall_s", "load_average", "settings", "peak", "workloads", "results"):
        assert key in written
    assert written["machine"]["cpu_model"] and written["machine"]["logical_cpus"] >= 1
    assert written["machine"]["tensorflow"] and "commit" in written["machine"]["git"]
    peak = written["peak"]
    assert peak["flops_per_s"] == max(peak["start_flops_per_s"], peak["end_flops_per_s"]) > 0

    rows = {(r["workload"], r["step"], r["mode"]): r for r in written["results"]}
    assert set(rows) == {(n, s, m) for n in names for s in ("forward", "train") for m in ("eager", "function", "xla")}
    for key, row in rows.items():
        assert set(row) == ROW_FIELDS, key
        assert row["status"] == "ok", (key, row["error"])
        assert all(row[field] is not None for field in MEASURED), key
        assert row["repeats"] >= 2
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
    ],
)
def test_bad_flags_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_list_shows_every_workload_and_preset(capsys):
    assert run.main(["--list"]) is None
    out = capsys.readouterr().out
    for name in registry.load():
        assert f"{name}: " in out
    assert out.count("smoke: ") == len(registry.load())
