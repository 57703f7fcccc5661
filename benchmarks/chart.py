"""A PNG chart of a run: median step time per workload, step and mode, on a log scale."""

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_COLOURS = {"eager": "#d62728", "function": "#1f77b4", "xla": "#2ca02c"}
_PEER_HATCH = {"sonnet": "//", "keras": ".."}


def _bars(result: dict) -> tuple[list[str], list[tuple[str, list, list, list, str, str]]]:
    """Group labels, and per series (label, medians, lower errors, upper errors, colour, hatch)."""
    groups = list(dict.fromkeys((r["workload"], r["step"]) for r in result["results"]))
    series: dict[tuple[str, str], dict] = {}
    for r in result["results"]:
        entries = [("ours", r)] + list(r["peers"].items())
        for implementation, figures in entries:
            key = (implementation, r["mode"])
            series.setdefault(key, {})[(r["workload"], r["step"])] = figures
    modes = list(_COLOURS)
    order = sorted(series, key=lambda key: (key[0] != "ours", key[0], modes.index(key[1])))
    out = []
    for implementation, mode in order:
        by_group = series[(implementation, mode)]
        medians, low, high = [], [], []
        for g in groups:
            f = by_group.get(g)
            ok = f is not None and f.get("median_s")
            medians.append(1e3 * f["median_s"] if ok else np.nan)
            low.append(1e3 * (f["median_s"] - f["q1_s"]) if ok else 0.0)
            high.append(1e3 * (f["q3_s"] - f["median_s"]) if ok else 0.0)
        label = mode if implementation == "ours" else f"{implementation} ({mode})"
        out.append((label, medians, low, high, _COLOURS[mode], _PEER_HATCH.get(implementation, "")))
    return [f"{w}\n{s}" for w, s in groups], out


def save(result: dict, path: str) -> None:
    """Writes the chart of `result` (the run's JSON document) to `path`."""
    labels, series = _bars(result)
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(labels) + 2), 5.5))
    for i, (label, medians, low, high, colour, hatch) in enumerate(series):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            medians,
            width,
            yerr=[low, high],
            label=label,
            color=colour,
            alpha=0.45 if hatch else 0.9,
            hatch=hatch,
            edgecolor="black",
            linewidth=0.4,
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("median step time (ms, log scale; bars: interquartile range)")
    s, m = result["settings"], result["machine"]
    ax.set_title(
        f"preset {s['preset']}, {s['dtype']}, {s['replicas']} replica(s); "
        f"{m['cpu_model']}, TensorFlow {m['tensorflow']}",
        fontsize=9,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
