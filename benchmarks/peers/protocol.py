"""The measurement every side-by-side process makes, ours and a peer's alike.

Standard library only: a peer script runs under the peer's own Python (a separate
venv with PyTorch, say), where neither TensorFlow nor this repository is installed.
It is imported as `protocol` by the peer scripts in this folder (run as files, so
this folder is on their `sys.path`) and as `benchmarks.peers.protocol` by ours.

One process: build, make the first call (timed apart: tracing, compiling), run the
warm-up calls, time `steps` calls one by one, and print ONE line of JSON on stdout:

    {"side": ..., "per_step_s": median of the timed calls, "mean_s": ..., "min_s": ...,
     "times_s": [...], "cpu_per_step_s": median CPU time of the process per timed call,
     "cpu_times_s": [...], "first_call_s": ..., "threads": ..., "versions": {...}, ...}

CPU time (`time.process_time`: every thread of the process) is the steadier figure on a
shared machine when each side runs ONE thread: it counts the work done, not the time
spent waiting for a core. With several threads it also counts threads that spin while
they wait (OpenMP runtimes do), so compare wall-clock times there.

`benchmarks/side_by_side.py` reads the last such line of each process.
"""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

STEPS = ("train", "forward")


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every side-by-side process takes (ours adds a few of its own)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="the workload's size as JSON, e.g. '{\"batch\": 16, ...}'")
    p.add_argument("--step", choices=STEPS, default="train", help="the step to time (default: train)")
    p.add_argument("--steps", type=int, default=5, help="timed calls (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls after the first one (default: 2)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 keeps the library's default")
    return p


def parse(
    description: str, argv: list[str] | None = None, p: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Parsed arguments, with `config` decoded; a bad value exits naming the argument.

    `p` is `parser(description)` with arguments of the caller's own added, if it has any.
    """
    p = p or parser(description)
    args = p.parse_args(argv)
    try:
        args.config = json.loads(args.config)
    except json.JSONDecodeError as e:
        p.error(f"--config is not JSON ({e}): {args.config!r}")
    if not isinstance(args.config, dict):
        p.error(f"--config must be a JSON object, got {args.config!r}")
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    if args.warmup < 0:
        p.error(f"--warmup must be at least 0, got {args.warmup}")
    return args


def missing(package: str, how: str) -> None:
    """Exits with a message saying which package is missing and how to install it."""
    sys.exit(f"{os.path.basename(sys.argv[0])}: cannot import {package} with {sys.executable}.\n{how}")


def measure(call: Callable[[], Any], steps: int, warmup: int) -> dict:
    """Times the first call, runs `warmup` more, then times `steps` calls one by one."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    for _ in range(warmup):
        call()
    times, cpu_times = [], []
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "per_step_s": statistics.median(times),
        "cpu_per_step_s": statistics.median(cpu_times),
        "cpu_times_s": cpu_times,
        "mean_s": statistics.fmean(times),
        "min_s": min(times),
        "times_s": times,
        "first_call_s": first,
    }


def report(side: str, args: argparse.Namespace, timing: dict, **info: Any) -> None:
    """Prints the process's one JSON line (timing, arguments, `info` such as versions and threads)."""
    record = {"side": side, "step": args.step, "config": args.config, "steps": args.steps, "warmup": args.warmup}
    record.update(timing)
    record.update(info)
    record["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps(record), flush=True)
