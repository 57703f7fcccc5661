"""TensorFlow's CPU allocators side by side: what each lets the harness read, and what it costs.

    python -m benchmarks.allocator --pairs 4                      # oneDNN as this machine has it
    TF_ENABLE_ONEDNN_OPTS=1 python -m benchmarks.allocator --pairs 4

The harness reads a step's peak memory from TensorFlow's allocator statistics
(`tf.config.experimental.get_memory_info`). TensorFlow's default CPU allocator keeps
none unless oneDNN is on, and with oneDNN it leaves out every allocation under 256 KiB.
`TF_CPU_ALLOCATOR_USE_BFC=true`, set before TensorFlow starts, puts a best-fit-with-
coalescing allocator (the one GPUs use) in front of the CPU's memory, which keeps
statistics of every allocation. This script measures both questions:

- what each allocator reports (`probe`): whether statistics exist, and the smallest
  allocation they count;
- what it costs: each *pair* runs the harness's workloads (function mode, no peers) in
  two processes one after the other, one per allocator, the order alternating from
  pair to pair; the ratio of a pair is the BFC process's step time over the default
  one's, per workload and step, and the report is the median ratio over pairs with a
  95% bootstrap interval. Separate processes are needed: the allocator is chosen once,
  when TensorFlow starts.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
ALLOCATORS = ("default", "bfc")


def _started() -> bool:
    """Whether TensorFlow has started its devices (after which the allocator is fixed)."""
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.eager import context

    return bool(getattr(context.context(), "_initialized", True))


def choose(name: str | None) -> str:
    """Makes TensorFlow use the CPU allocator `name` ("bfc" or "default"); None keeps what
    `TF_CPU_ALLOCATOR_USE_BFC` says, and without it chooses "bfc". Returns the allocator
    in use: the choice if TensorFlow has not started its devices yet (no op has run),
    else the one it started with, left alone. `probe` tells what it reports.
    """
    if _started():
        return cpu_allocator()
    if name is None:
        name = cpu_allocator() if BFC_ENV in os.environ else "bfc"
    os.environ[BFC_ENV] = "true" if name == "bfc" else "false"
    return name


def cpu_allocator() -> str:
    """The CPU allocator `TF_CPU_ALLOCATOR_USE_BFC` asks for: "bfc" or "default"."""
    return "bfc" if os.environ.get(BFC_ENV, "").strip().lower() in ("true", "1") else "default"


def why_none(memory: dict) -> str:
    """Why a run has no allocator statistics, for its table: the cause and the remedy."""
    if memory["cpu_allocator"] == "default":
        return (
            "TensorFlow's default CPU allocator keeps none without oneDNN (TF_ENABLE_ONEDNN_OPTS=0, the "
            f"default on many AMD CPUs); --cpu-allocator bfc ({BFC_ENV}=true before TensorFlow starts) has them"
        )
    return (
        f"{memory['error']} ({BFC_ENV}=true takes effect only if set before TensorFlow starts its devices, "
        "as python -m benchmarks.run does)"
    )


def probe(device: str = "CPU:0") -> dict:
    """What the allocator of `device` reports: statistics or not, and the smallest allocation counted.

    Allocates float32 tensors of 1, 16, 100, 255 and 256 KiB in turn and reads the bytes
    in use before and after each. Returns {"statistics": bool, "smallest_counted_bytes":
    the smallest of those sizes that changed the count (None if none did, or without
    statistics), "error": why there are no statistics, or None}.
    """
    import tensorflow as tf

    from benchmarks import machine

    device = machine.short_device(device)
    try:
        tf.config.experimental.get_memory_info(device)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        return {"statistics": False, "smallest_counted_bytes": None, "error": f"{type(e).__name__}: {e}"}
    smallest = None
    for kib in (256, 255, 100, 16, 1):
        with tf.device(device):
            before = tf.config.experimental.get_memory_info(device)["current"]
            t = tf.fill([kib * 256], 1.0)  # kib KiB of float32
            grew = tf.config.experimental.get_memory_info(device)["current"] > before
            del t
        if grew:
            smallest = kib * 1024
    return {"statistics": True, "smallest_counted_bytes": smallest, "error": None}


def child(workloads: Sequence[str], preset: str, time_cap: float) -> dict:
    """One process's side: the allocator's probe, and the harness's step times in function mode."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from benchmarks import measure, registry

    tf.get_logger().setLevel("ERROR")
    settings = measure.Settings.for_preset(preset, modes=("function",), peers=(), time_cap=time_cap)
    times = {}
    for workload in registry.select(list(workloads)):
        for row in measure.run_workload(workload, settings)["rows"]:
            times[f"{row['workload']}/{row['step']}"] = row["median_s"]
    return {"probe": probe(), "times": times}


def _side(allocator: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.pop(BFC_ENV, None)
    if allocator == "bfc":
        env[BFC_ENV] = "true"
    command = [sys.executable, "-m", "benchmarks.allocator", "--child", "--preset", args.preset]
    command += ["--workloads", ",".join(args.workloads), "--time-cap", str(args.time_cap)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {allocator} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> dict:
    """`args.pairs` pairs of processes, one per allocator; the BFC/default ratio per workload and step."""
    from benchmarks import stats

    sides = {a: [] for a in ALLOCATORS}
    for i in range(args.pairs):
        order = ALLOCATORS if i % 2 == 0 else ALLOCATORS[::-1]
        for allocator in order:
            sides[allocator].append(_side(allocator, args))
        print(f"pair {i + 1}/{args.pairs} done", file=sys.stderr, flush=True)
    ratios = {}
    for key in sides["default"][0]["times"]:
        bfc = [s["times"][key] for s in sides["bfc"]]
        default = [s["times"][key] for s in sides["default"]]
        if all(t is not None for t in bfc + default):
            r = stats.ratio(bfc, default)
            ratios[key] = {"median": r.median, "low": r.low, "high": r.high, "n": r.n}
    return {
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(TensorFlow's default)"),
        "probe": {a: sides[a][0]["probe"] for a in ALLOCATORS},
        "bfc_over_default": ratios,
        "sides": sides,
    }


def markdown(result: dict) -> str:
    lines = [f"oneDNN: TF_ENABLE_ONEDNN_OPTS={result['onednn']}", ""]
    lines += ["| allocator | statistics | smallest allocation counted |", "|---|---|---|"]
    for allocator, p in result["probe"].items():
        smallest = p["smallest_counted_bytes"]
        counted = "–" if smallest is None else f"{smallest // 1024} KiB"
        lines.append(f"| {allocator} | {'yes' if p['statistics'] else 'no'} | {counted} |")
    lines += ["", "| workload/step | BFC time / default time [95% CI] | pairs |", "|---|---|---|"]
    for key, r in result["bfc_over_default"].items():
        lines.append(f"| {key} | {r['median']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['n']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.allocator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pairs", type=int, default=4, help="pairs of processes (one per allocator). Default: 4")
    p.add_argument("--preset", default="quick", help="the workloads' sizes (smoke, quick, paper). Default: quick")
    p.add_argument(
        "--workloads",
        type=lambda t: tuple(n for n in t.split(",") if n),
        default=(),
        help="comma-separated workloads (default: all registered)",
    )
    p.add_argument("--time-cap", type=float, default=10.0, help="seconds of timing per workload. Default: 10")
    p.add_argument("--out", default=None, help="also write the result's JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error(f"--pairs must be at least 1, got {args.pairs}")
    if args.child:
        print(json.dumps(child(args.workloads, args.preset, args.time_cap)))
        return None
    if not args.workloads:
        from benchmarks import registry

        args.workloads = tuple(registry.load())
    result = compare(args)
    print(markdown(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
