"""How a workload is measured: rounds, the time cap, and calls too slow to repeat."""

from benchmarks import measure, registry

MLP = registry.select(["mlp"])[0]


def _run(**overrides):
    settings = measure.Settings.for_preset("smoke", steps=("forward",), peers=("sonnet",), **overrides)
    return measure.run_workload(MLP, settings)


def _rows(**overrides):
    return {r["mode"]: r for r in _run(**overrides)["rows"]}


def test_every_entry_gets_max_repeats_rounds_within_the_cap():
    rows = _rows(time_cap=600.0, min_repeats=2, max_repeats=4)
    for row in rows.values():
        assert row["interleaved"] and row["repeats"] == 4
    assert rows["function"]["speedup_vs_eager"]["n"] == 4
    assert rows["function"]["peers"]["sonnet"]["ours_over_peer"]["n"] == 4
    assert rows["xla"]["speedup_vs_function"]["n"] == 4


def test_the_cap_stops_the_rounds_between_min_and_max_repeats():
    outcome = _run(time_cap=2.0, min_repeats=3, max_repeats=10**6, repeat_seconds=0.0)
    assert outcome["workload"]["capped"]
    repeats = {r["repeats"] for r in outcome["rows"]}
    assert len(repeats) == 1 and 3 <= repeats.pop() < 10**6


def test_calls_over_the_per_call_limit_are_timed_once_and_not_interleaved():
    rows = _rows(time_cap=1e-6)
    for row in rows.values():
        assert row["status"] == "ok"
        assert row["interleaved"] is False and row["repeats"] == 1
    ratio = rows["function"]["speedup_vs_eager"]
    assert ratio["n"] == 1 and ratio["low"] == ratio["median"] == ratio["high"]
