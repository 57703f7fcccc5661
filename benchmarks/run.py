"""Times every registered workload in eager, tf.function and XLA modes, against peers.

    python -m benchmarks.run                       # the `quick` preset (what `make run` does)
    python -m benchmarks.run --preset paper        # the published sizes: long
    python -m benchmarks.run --workloads lstm,mlp --modes function,xla --peers none
    python -m benchmarks.run --dtype bfloat16 --replicas 2
    python -m benchmarks.run --compare results/benchmarks/OLD.json

Prints a Markdown table on stdout (a progress line per workload on stderr), and writes
the JSON of every figure (with the machine, TensorFlow version and git commit) and a
PNG chart to --out-dir. benchmarks/README.md describes the method.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import core  # noqa: E402
from benchmarks import allocator, chart, flops, machine, measure, registry, report, steps  # noqa: E402

DTYPES = ("float32", "bfloat16")
DEFAULT_OUT_DIR = os.path.join("results", "benchmarks")
CALIBRATION = {
    "smoke": flops.CALIBRATION["smoke"],
    "quick": flops.CALIBRATION["full"],
    "paper": flops.CALIBRATION["full"],
}


def _names(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated list, each item checked against `allowed` ("none" for an empty list)."""
    if text.strip().lower() == "none":
        return ()
    items = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in items if t not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The command line; `--help` documents every flag."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    presets = "; ".join(f"{k}: {v}" for k, v in registry.PRESET_HELP.items())
    steps_list = lambda t: _names(t, steps.STEPS, "step")  # noqa: E731
    modes_list = lambda t: _names(t, steps.MODES, "mode")  # noqa: E731
    peers_list = lambda t: _names(t, measure.PEER_NAMES, "peer")  # noqa: E731
    add = p.add_argument
    add(
        "--preset",
        choices=registry.PRESETS,
        default="quick",
        help=f"workload sizes and timing effort ({presets}). Default: quick",
    )
    add("--workloads", default="", metavar="NAMES", help="comma-separated workloads to run (default: all; see --list)")
    add("--list", action="store_true", help="list the registered workloads with their sizes, and exit")
    add(
        "--steps",
        type=steps_list,
        default=steps.STEPS,
        help="comma-separated steps: forward (inference), train (forward, backward, Adam update). Default: both",
    )
    add(
        "--modes",
        type=modes_list,
        default=steps.MODES,
        help="comma-separated modes: eager, function (tf.function), xla (tf.function(jit_compile=True)). Default: all",
    )
    add(
        "--peers",
        type=peers_list,
        default=measure.PEER_NAMES,
        help="comma-separated peer libraries timed against ours where a workload has them (sonnet, keras), "
        "or none. Default: both",
    )
    add(
        "--peer-modes",
        type=modes_list,
        default=("function",),
        help="comma-separated modes in which the peers run (each costs a trace or compile per peer). Default: function",
    )
    add(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="dtype of inputs and parameters, end to end. Default: float32",
    )
    add(
        "--replicas",
        type=_positive(int),
        default=1,
        help="run the train step under MirroredStrategy over N devices: N GPUs if there are that many, "
        "else N logical devices split from the CPU (set up before TensorFlow starts). Default: 1",
    )
    add(
        "--time-cap",
        type=_positive(float),
        default=None,
        help="seconds of timing per workload, after which it stops at --min-repeats "
        "(tracing and compiling come on top). Default by preset: smoke 10, quick 35, paper 300",
    )
    add(
        "--max-repeats",
        type=_positive(int),
        default=None,
        help="timed rounds per step at most. Default by preset: 3, 30, 20",
    )
    add(
        "--min-repeats",
        type=_positive(int),
        default=None,
        help="timed rounds per step at least, even past the cap. Default by preset: 2, 5, 3",
    )
    add("--warmup", type=int, default=None, help="untimed calls after the first call. Default by preset: 1, 2, 1")
    add(
        "--repeat-seconds",
        type=float,
        default=None,
        help="target seconds of one entry's back-to-back calls within a round. Default by preset: 0, 0.05, 0.2",
    )
    add("--seed", type=int, default=0, help="seed of the input data. Default: 0")
    add(
        "--cpu-allocator",
        choices=allocator.ALLOCATORS,
        default=None,
        help="TensorFlow's CPU allocator, chosen before TensorFlow starts: bfc keeps statistics of every "
        "allocation on every CPU (the memory column); default keeps none without oneDNN and leaves out "
        f"allocations under 256 KiB with it. Default: bfc, unless {allocator.BFC_ENV} is set",
    )
    add(
        "--out-dir",
        default=DEFAULT_OUT_DIR,
        help=f"where the JSON and PNG go; created if missing, and checked writable before anything runs. "
        f"Default: {DEFAULT_OUT_DIR}",
    )
    add("--compare", metavar="OLD.json", default=None, help="also print the change per row from an earlier run's JSON")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.min_repeats and args.max_repeats and args.min_repeats > args.max_repeats:
        p.error(f"--min-repeats ({args.min_repeats}) is more than --max-repeats ({args.max_repeats})")
    if args.warmup is not None and args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.repeat_seconds is not None and args.repeat_seconds < 0:
        p.error(f"--repeat-seconds must be >= 0, got {args.repeat_seconds}")
    if not args.steps or not args.modes:
        p.error("--steps and --modes need at least one entry each")
    if args.peers and not set(args.peer_modes) & set(args.modes):
        p.error(f"--peer-modes {','.join(args.peer_modes)} has no mode in --modes {','.join(args.modes)}")
    if args.compare:
        _check_compare(p, args.compare)
    if not args.list:  # --list writes nothing
        _check_out_dir(p, args.out_dir)


def _check_compare(p: argparse.ArgumentParser, path: str) -> None:
    """An earlier run's JSON, read now rather than after the whole run."""
    if not os.path.isfile(path):
        p.error(f"--compare: no such file {path!r}")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        p.error(f"--compare: cannot read {path!r} as JSON ({e})")
    if not isinstance(old, dict) or not isinstance(old.get("results"), list) or "settings" not in old:
        p.error(f"--compare: {path!r} is not a result of python -m benchmarks.run (no settings and results)")


def _check_out_dir(p: argparse.ArgumentParser, out_dir: str) -> None:
    """Creates `out_dir` and writes a file there, so a bad one fails now, not after the run."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        reason = "it is not a directory" if os.path.exists(out_dir) and not os.path.isdir(out_dir) else e.strerror
        p.error(f"--out-dir {out_dir!r}: cannot write there ({reason})")


def replica_devices(replicas: int) -> list[str]:
    """The devices of the train step's replicas; must run before TensorFlow initialises devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= replicas:
        return [f"/gpu:{i}" for i in range(replicas)]
    return core.distribute.logical_cpus(replicas)


def make_strategy(devices: list[str], peers: Sequence[str]) -> tf.distribute.Strategy:
    """A MirroredStrategy over `devices`: Sonnet's `Replicator` (a MirroredStrategy) if Sonnet is a peer.

    Sonnet's optimizers accept only its own strategies, and one process should hold one
    mirrored strategy (their collectives share numbering), so ours, Sonnet's and Keras's
    train steps all run under the same one.
    """
    if "sonnet" in peers:
        try:
            import sonnet as snt

            return snt.distribute.Replicator(devices)
        except ImportError:
            pass
    return tf.distribute.MirroredStrategy(devices)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _progress(i: int, n: int, outcome: dict) -> str:
    w, rows = outcome["workload"], outcome["rows"]
    speed = []
    for r in rows:
        if r["mode"] == "function" and r["speedup_vs_eager"]:
            speed.append(f"{r['step']} function ×{r['speedup_vs_eager']['median']:.2f} eager")
        if r["mode"] == "xla" and r["speedup_vs_function"]:
            speed.append(f"xla ×{r['speedup_vs_function']['median']:.2f} function")
    failed = sum(r["status"] != "ok" for r in rows)
    once = sum(r["interleaved"] is False for r in rows)
    tail = (f"; {failed} failed" if failed else "") + (f"; {once} timed once (too slow to repeat)" if once else "")
    tail += "; stopped at the time cap" if w["capped"] else ""
    return f"[{i}/{n}] {w['name']}: {w['wall_s']:.0f} s; {', '.join(speed) or 'no speedups measured'}{tail}"


def run(
    settings: measure.Settings,
    workloads: Sequence[registry.Workload],
    strategy: tf.distribute.Strategy | None = None,
    progress: Callable[[str], None] = _stderr,
    command: str = "",
) -> dict:
    """Measures `workloads`; returns the JSON document of the run (see benchmarks/README.md)."""
    start = time.perf_counter()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = machine.load_average()
    device = machine.compute_device()
    memory = {"cpu_allocator": allocator.cpu_allocator(), **allocator.probe(device)}
    # The peak is calibrated at the start, to compare against as the run goes, and again
    # at the end; the better of the two (load only ever lowers it), raised to the best
    # rate any step of the run achieved, is the run's peak.
    first = flops.measure_peak(settings.dtype, CALIBRATION[settings.preset])
    progress(
        f"peak {first['flops_per_s'] / 1e9:.0f} GFLOP/s ({first['dtype']}, {first['best']}); "
        f"{len(workloads)} workload(s), preset {settings.preset}; memory: {report.memory_source(memory)}"
    )
    outcomes = []
    for i, workload in enumerate(workloads, 1):
        outcome = measure.run_workload(workload, settings, strategy, device)
        outcomes.append(outcome)
        progress(_progress(i, len(workloads), outcome))
    last = flops.measure_peak(settings.dtype, CALIBRATION[settings.preset])
    rows = [row for o in outcomes for row in o["rows"]]
    peak = _peak(first, last, rows)
    for row in rows:
        if row["flops_per_s"] is not None:
            row["fraction_of_peak"] = row["flops_per_s"] / peak["flops_per_s"]
        _note_memory(row, memory, device)
        for figures in row["peers"].values():
            _note_memory(figures, memory, device)
    return {
        "schema": 2,
        "command": command,
        "started": started,
        "wall_s": time.perf_counter() - start,
        "load_average": {"start": load_start, "end": machine.load_average()},
        "settings": {
            "preset": settings.preset,
            "steps": list(settings.steps),
            "modes": list(settings.modes),
            "dtype": settings.dtype.name,
            "replicas": settings.replicas,
            "replica_devices": None if strategy is None else list(strategy.extended.worker_devices),
            "strategy": None if strategy is None else type(strategy).__name__,
            "peers": list(settings.peers),
            "peer_modes": list(settings.peer_modes),
            "time_cap_s": settings.time_cap,
            "max_repeats": settings.max_repeats,
            "min_repeats": settings.min_repeats,
            "warmup": settings.warmup,
            "repeat_seconds": settings.repeat_seconds,
            "seed": settings.seed,
        },
        "machine": machine.describe(),
        "peak": peak,
        "memory": memory,
        "workloads": [o["workload"] for o in outcomes],
        "results": [row for o in outcomes for row in o["rows"]],
    }


def _peak(first: dict, last: dict, rows: list[dict]) -> dict:
    """The run's peak: the better calibration, or the best rate a step achieved if that is higher.

    A step's rate (ours, or a peer's on the same FLOP count) above the calibration means
    the calibration missed what the machine can do; the peak is then that rate, so no
    fraction of peak exceeds 1, and `raised_by` says which step set it.
    """
    calibrated = first if first["flops_per_s"] >= last["flops_per_s"] else last
    best_rate, raised_by = calibrated["flops_per_s"], None
    for row in rows:
        rates = {"ours": row["flops_per_s"]}
        for name, peer in row["peers"].items():
            if row["flops_per_step"] and peer["median_s"]:
                rates[name] = row["flops_per_step"] / peer["median_s"]
        for name, rate in rates.items():
            if rate is not None and rate > best_rate:
                best_rate, raised_by = rate, f"{row['workload']} {row['step']} {row['mode']} ({name})"
    return {
        "flops_per_s": best_rate,
        "dtype": first["dtype"],
        "calibrated_flops_per_s": calibrated["flops_per_s"],
        "start_flops_per_s": first["flops_per_s"],
        "end_flops_per_s": last["flops_per_s"],
        "best_kernel": calibrated["best"],
        "raised_by": raised_by,
        "kernels": {"start": first["kernels"], "end": last["kernels"]},
    }


def _note_memory(figures: dict, memory: dict, device: str) -> None:
    """Why a row (or a peer's figures) has no memory figure: None where it has one."""
    if figures["peak_memory_bytes"] is not None:
        note = None
    elif figures["status"] != "ok":
        note = "the step failed"
    elif not memory["statistics"]:
        note = f"no allocator statistics on {machine.short_device(device)}: {allocator.why_none(memory)}"
    else:
        note = "not read"
    figures["memory_note"] = note


def _list(workloads: Sequence[registry.Workload]) -> str:
    lines = []
    for w in workloads:
        peers = ", ".join(sorted(w.peers)) or "none"
        lines.append(f"{w.name}: {w.description} (peers: {peers})")
        lines += [f"    {preset}: {w.sizes[preset]}" for preset in registry.PRESETS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict | None:
    """The command line. Returns the run's JSON document (None for --list)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    _check(p, args)
    # Before anything runs a TensorFlow op: the allocator is chosen and the logical
    # devices are made when TensorFlow starts its devices.
    allocator.choose(args.cpu_allocator)
    devices = replica_devices(args.replicas) if args.replicas > 1 else None
    tf.get_logger().setLevel("ERROR")  # retracing notes and profiler deprecations
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    try:
        workloads = registry.select(names)
    except KeyError as e:
        p.error(e.args[0])
    if args.list:
        print(_list(workloads))
        return None
    settings = measure.Settings.for_preset(
        args.preset,
        steps=args.steps,
        modes=args.modes,
        dtype=tf.as_dtype(args.dtype),
        replicas=args.replicas,
        peers=args.peers,
        peer_modes=args.peer_modes,
        time_cap=args.time_cap,
        max_repeats=args.max_repeats,
        min_repeats=args.min_repeats,
        warmup=args.warmup,
        repeat_seconds=args.repeat_seconds,
        seed=args.seed,
    )
    strategy = make_strategy(devices, settings.peers) if devices else None
    command = "python -m benchmarks.run" + "".join(f" {a}" for a in argv)
    result = run(settings, workloads, strategy, command=command)
    print(report.markdown(result))

    os.makedirs(args.out_dir, exist_ok=True)  # checked at the start; made again if removed since
    stamp = result["started"].replace(":", "-")[:19]
    stem = os.path.join(args.out_dir, f"{settings.preset}-{settings.dtype.name}-r{settings.replicas}-{stamp}")
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    chart.save(result, stem + ".png")
    _stderr(f"wrote {stem}.json and {stem}.png")
    if args.compare:
        with open(args.compare) as f:
            print(report.compare(json.load(f), result))
    return result


if __name__ == "__main__":
    main()
