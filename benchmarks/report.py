"""Markdown tables of a run, and the per-row comparison of two runs (`--compare`)."""

from collections.abc import Iterable

DASH = "–"


def ms(seconds: float | None) -> str:
    """A duration in milliseconds, three significant digits."""
    if seconds is None:
        return DASH
    value = seconds * 1e3
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def _seconds(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds:.2f}"


def _ratio(ratio: dict | None) -> str:
    if ratio is None:
        return DASH
    return f"{ratio['median']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"


def _rate(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return DASH if value is None else f"{value / scale:.{digits}g}"


def _count(value: float | None) -> str:
    """A rate such as examples per second: whole numbers with thousands separators."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return DASH
    value = 100 * fraction
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def memory_source(memory: dict | None) -> str:
    """Where the memory column comes from, in a few words."""
    if memory is None:
        return "not recorded"
    if not memory["statistics"]:
        return "none (no allocator statistics)"
    smallest = memory["smallest_counted_bytes"]
    if smallest is not None and smallest <= 1024:
        return f"allocator statistics ({memory['cpu_allocator']} allocator), every allocation counted"
    floor = "none of 1 to 256 KiB" if smallest is None else f"none under {smallest // 1024} KiB"
    return f"allocator statistics ({memory['cpu_allocator']} allocator), {floor} counted: lower bounds"


def heading(result: dict) -> str:
    """Three lines saying what was measured, where, and under what load."""
    s, m, peak = result["settings"], result["machine"], result["peak"]
    git = m["git"]
    commit = (git["commit"] or "unknown")[:12] + (" (modified)" if git["dirty"] else "")
    load = result["load_average"]
    loads = f"{load['start'][0]} at start, {load['end'][0]} at end" if load["start"] and load["end"] else "unknown"
    calibrated = (
        f"the best of {len(peak['kernels']['start'])} matrix products and convolutions, {peak['best_kernel']}, "
        f"{peak['start_flops_per_s'] / 1e9:.0f} at the start and {peak['end_flops_per_s'] / 1e9:.0f} at the end"
    )
    if peak["raised_by"]:
        calibrated = (
            f"the rate of {peak['raised_by']}, above the calibration's "
            f"{peak['calibrated_flops_per_s'] / 1e9:.0f} ({calibrated})"
        )
    return (
        f"**flagship benchmarks**: preset `{s['preset']}`, {s['dtype']}, "
        f"{s['replicas']} replica(s) for the train step; "
        f"{m['cpu_model']} ({m['logical_cpus']} logical CPUs), device {m['compute_device']}; "
        f"TensorFlow {m['tensorflow']}, commit {commit}.\n\n"
        f"Peak {peak['flops_per_s'] / 1e9:.0f} GFLOP/s ({peak['dtype']}: {calibrated}); "
        f"1-minute load average {loads}; {result['wall_s']:.0f} s in all. "
        f"Memory: {memory_source(result.get('memory'))}."
    )


def main_table(result: dict) -> str:
    """Ours: one row per workload, step and mode; below it, why a memory figure is missing."""
    notes: dict[str, str] = {}
    header = [
        "workload",
        "step",
        "mode",
        "first call (s)",
        "median (ms)",
        "IQR (ms)",
        "examples/s",
        "× eager [95% CI]",
        "× function [95% CI]",
        "GFLOP/s",
        "% peak",
        "FLOPs from",
        "step mem (MiB)",
    ]
    rows = []
    for r in result["results"]:
        if r["status"] != "ok":
            rows.append(
                [r["workload"], r["step"], r["mode"], _seconds(r["first_call_s"]), "error: see below"]
                + [DASH] * (len(header) - 5)
            )
            continue
        memory = r["step_memory_bytes"]
        memory_cell = f"{memory / 2**20:.1f}" if memory is not None else f"n/a{_mark(notes, r.get('memory_note'))}"
        once = not r["interleaved"]
        rows.append(
            [
                r["workload"],
                r["step"],
                r["mode"],
                _seconds(r["first_call_s"]),
                ms(r["median_s"]) + (" (once)" if once else ""),
                DASH if once else ms(r["iqr_s"]),
                _count(r["examples_per_s"]),
                _ratio(r["speedup_vs_eager"]),
                _ratio(r["speedup_vs_function"]),
                _rate(r["flops_per_s"], 1e9),
                _percent(r["fraction_of_peak"]),
                r["flops_source"].split(" ")[0],
                memory_cell,
            ]
        )
    table = _table(header, rows)
    return table + "".join(f"\n\n{mark} step mem n/a: {note}" for note, mark in notes.items())


def _mark(notes: dict[str, str], note: str | None) -> str:
    """The footnote mark of `note` (a new one for a new note); empty without a note."""
    if not note:
        return ""
    return notes.setdefault(note, "*" * (len(notes) + 1))


def peer_table(result: dict) -> str:
    """Ours against each peer, in the modes peers ran: times and ours/peer ratios (< 1: ours is faster)."""
    peers = list(dict.fromkeys(p for p in result["settings"]["peers"] for r in result["results"] if p in r["peers"]))
    if not peers:
        return ""
    header = ["workload", "step", "mode", "ours (ms)"]
    for p in peers:
        header += [f"{p} (ms)", f"ours/{p} [95% CI]"]
    rows = []
    for r in result["results"]:
        if not r["peers"]:
            continue
        row = [r["workload"], r["step"], r["mode"], ms(r["median_s"])]
        for p in peers:
            peer = r["peers"].get(p)
            if peer is None:
                row += ["n/a", DASH]
            elif peer["status"] != "ok":
                row += ["error: see below", DASH]
            else:
                once = "" if peer["interleaved"] else " (once)"
                row += [ms(peer["median_s"]) + once, _ratio(peer["ours_over_peer"])]
        rows.append(row)
    return _table(header, rows)


def errors(result: dict) -> str:
    """Every failed entry with its message."""
    lines = []
    for r in result["results"]:
        where = f"{r['workload']} {r['step']} {r['mode']}"
        if r["status"] != "ok":
            lines.append(f"- ours, {where}: {r['error']}")
        for p, peer in r["peers"].items():
            if peer["status"] != "ok":
                lines.append(f"- {p}, {where}: {peer['error']}")
    return "\n".join(dict.fromkeys(lines))


def markdown(result: dict) -> str:
    """The whole report: heading, our table, the peer table, errors."""
    parts = [heading(result), main_table(result)]
    if any(not r["interleaved"] for r in result["results"] if r["status"] == "ok"):
        parts.append(
            "(once): a call too slow to repeat within the time cap, timed once after its first call, "
            "not interleaved; its ratios are ratios of medians, without an interval."
        )
    peers = peer_table(result)
    if peers:
        parts.append("Ours against the peers, interleaved (ratio of times; below 1, ours is faster):\n\n" + peers)
    failed = errors(result)
    if failed:
        parts.append("Errors:\n\n" + failed)
    return "\n\n".join(parts) + "\n"


def _speedup(row: dict) -> str:
    ratio = row["speedup_vs_eager"]
    return DASH if ratio is None else f"{ratio['median']:.2f}"


def _key(row: dict) -> tuple:
    return row["workload"], row["step"], row["mode"]


def compare(old: dict, new: dict) -> str:
    """Per-row change from `old` to `new` (two JSON results), as a Markdown table.

    Absolute times from different runs move with the machine's load; the speedup
    columns (ratios measured within each run) are the steadier comparison.
    """
    notes = []
    for field in ("preset", "dtype", "replicas"):
        if old["settings"][field] != new["settings"][field]:
            notes.append(f"{field} differs: {old['settings'][field]} -> {new['settings'][field]}")
    if old["machine"]["cpu_model"] != new["machine"]["cpu_model"]:
        notes.append(f"machine differs: {old['machine']['cpu_model']} -> {new['machine']['cpu_model']}")
    previous = {_key(r): r for r in old["results"]}
    header = ["workload", "step", "mode", "old (ms)", "new (ms)", "change", "old × eager", "new × eager"]
    rows, unmatched = [], []
    for r in new["results"]:
        o = previous.pop(_key(r), None)
        if o is None:
            unmatched.append("/".join(_key(r)) + " (new)")
            continue
        change = DASH
        if o["median_s"] and r["median_s"]:
            change = f"{100 * (r['median_s'] / o['median_s'] - 1):+.1f}%"
        rows.append([*_key(r), ms(o["median_s"]), ms(r["median_s"]), change, _speedup(o), _speedup(r)])
    unmatched += ["/".join(k) + " (gone)" for k in previous]
    text = f"Change from {old.get('started', '?')} to {new.get('started', '?')} (negative: faster now):\n\n"
    text += _table(header, rows)
    if notes:
        text += "\n\nNote: " + "; ".join(notes) + "."
    if unmatched:
        text += "\n\nRows in only one run: " + ", ".join(unmatched) + "."
    return text + "\n"
