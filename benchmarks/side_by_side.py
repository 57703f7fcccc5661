"""Our step against a peer library's, in alternating separate processes: the median ratio.

    python -m benchmarks.side_by_side dnc --peer pytorch_dnc --peer-python PEER_VENV/bin/python \\
        --preset paper --modes function,xla --pairs 5

Each *pair* runs one process per side: ours once per mode, then the peer's (the order
rotates from pair to pair, so no side always runs first or follows the same process).
Every process builds its side, makes the first call (tracing, compiling) and the
warm-up calls, times `--steps` calls and prints its per-step time (the median of those
calls) as a line of JSON (`benchmarks/peers/protocol.py`). The ratio of a pair is our
per-step time over the peer's, so below 1 means ours is faster; the report is the
median ratio over pairs with its spread (lowest and highest pair, and a 95% bootstrap
interval of the median). Separate processes keep the two libraries from sharing
threads, allocators or caches; alternating them makes both sides see the same load
on a shared machine, where absolute times drift.

The peer runs under its own Python (a venv with PyTorch, say), given by `--peer-python`
or the `PEER_PYTHON` environment variable; ours under this one. `--threads N` gives
both sides N threads (TensorFlow's intra-op and inter-op pools, `torch.set_num_threads`);
by default each library keeps its own. On a loaded machine that matters: an OpenMP
runtime that spins waiting for busy cores loses far more than a pool that blocks, so
report the thread setting with the ratio.

Adding a peer (the GQN, BigGAN comparisons follow this):

1. Register our side as a workload in `benchmarks/workloads/` (the harness times it
   already); its sizes at each preset are the configuration both sides get.
2. Write `benchmarks/peers/<peer>.py`, run as a script under the peer's Python. It
   imports the installed peer package (or a clone the user points it to with an
   argument of its own; never copy the peer's code into this repository), and does
   `args = protocol.parse(...)`, builds the same computation from `args.config` (the
   workload's size as a dict), and ends with
   `protocol.report("<peer>", args, protocol.measure(call, args.steps, args.warmup), threads=..., versions=...)`.
   Its docstring says how to create the peer's venv, and it exits through
   `protocol.missing(...)` with those instructions when the import fails.
   `pytorch_dnc.py` is a complete example.
3. Add a `Peer(...)` line to `PEERS` below: its script, our workload, how to install it.
4. Say in the model's README where the peer computes something different.

The result (every pair's JSON, the ratios, the command) goes to stdout as a table and,
with `--out FILE`, to a JSON file.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_DIR = os.path.join(ROOT, "benchmarks", "peers")
MODES = ("eager", "function", "xla")


@dataclasses.dataclass(frozen=True)
class Peer:
    """A peer implementation of one of our workloads.

    Attributes:
      script: file in `benchmarks/peers/`, run under the peer's Python.
      workload: the name of our registered workload it is compared with.
      install: how a user creates the peer's venv (printed by `--list`).
    """

    script: str
    workload: str
    install: str


PEERS = {
    "pytorch_dnc": Peer(
        script="pytorch_dnc.py",
        workload="dnc",
        install=(
            "python3 -m venv PEER_VENV && PEER_VENV/bin/pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu && PEER_VENV/bin/pip install numpy && "
            "PEER_VENV/bin/pip install --no-deps dnc"
        ),
    ),
    "torch_gqn": Peer(
        script="torch_gqn.py",
        workload="gqn",
        install=(
            "git clone https://github.com/iShohei220/torch-gqn PEER_DIR && python3 -m venv PEER_VENV && "
            "PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu; "
            "then pass --peer-dir PEER_DIR"
        ),
    ),
    "biggan_pytorch": Peer(
        script="biggan_pytorch.py",
        workload="biggan",
        install=(
            "python3 -m venv PEER_VENV && PEER_VENV/bin/pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu && PEER_VENV/bin/pip install numpy; "
            "git clone https://github.com/ajbrock/BigGAN-PyTorch CLONE and pass --peer-dir CLONE"
        ),
    ),
}


def _run(command: Sequence[str], timeout: float | None) -> dict:
    """Runs one side's process; returns its JSON line, or raises naming the command and its stderr."""
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out after {timeout} s: {' '.join(command)}") from e
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"exit code {done.returncode}, no result from: {' '.join(command)}\n{tail}")
    return json.loads(lines[-1])


def compare(sides: dict[str, list[str]], peer: str, pairs: int, timeout: float | None = None, log=None) -> dict:
    """Runs every side's command once per pair, in an order rotated by one each pair.

    Args:
      sides: side name -> command; the ratios are each other side over `peer`.
      peer: the name of the denominator side.
      pairs: how many times each command runs.
      timeout: seconds per process, or None.
      log: a file for one progress line per process, or None.

    Returns:
      {"pairs": [{side: record}], "ratios": {side: {median, low, high, min, max, n, values}},
       "per_step_s": {side: median over pairs}}, and the same of CPU time per step as
      "cpu_ratios" and "cpu_per_step_s" when every process reported it.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if peer not in sides or len(sides) < 2:
        raise ValueError(f"need the peer {peer!r} and at least one other side, got {sorted(sides)}")
    names = list(sides)
    records = []
    for i in range(pairs):
        shift = i % len(names)
        record = {}
        for name in names[shift:] + names[:shift]:
            record[name] = _run(sides[name], timeout)
            if log is not None:
                cpu = record[name].get("cpu_per_step_s")
                cpu = "" if cpu is None else f" ({cpu * 1e3:.1f} ms CPU)"
                print(
                    f"pair {i + 1}/{pairs} {name}: {record[name]['per_step_s'] * 1e3:.1f} ms/step{cpu}",
                    file=log,
                    flush=True,
                )
        records.append(record)
    result = {"pairs": records}
    for key, prefix in (("per_step_s", ""), ("cpu_per_step_s", "cpu_")):
        if not all(key in r[name] for r in records for name in names):
            continue  # CPU times: only where every process reported them
        result[prefix + "ratios"] = {
            name: _ratio([r[name][key] / r[peer][key] for r in records]) for name in names if name != peer
        }
        result[prefix + "per_step_s"] = {name: float(np.median([r[name][key] for r in records])) for name in names}
    return result


def _ratio(values: list[float]) -> dict:
    """Median, 95% bootstrap interval of the median, extremes and values of the pairs' ratios."""
    low, high = stats.bootstrap_median_ci(values)
    return {
        "median": float(np.median(values)),
        "low": low,
        "high": high,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def ours_command(workload: str, mode: str, config: dict, args: argparse.Namespace) -> list[str]:
    """The command of one of our processes: this module as a worker."""
    return [
        sys.executable,
        "-m",
        "benchmarks.side_by_side",
        "--worker",
        workload,
        "--mode",
        mode,
        *_common(config, args),
    ]


def _common(config: dict, args: argparse.Namespace) -> list[str]:
    return [
        "--config",
        json.dumps(config),
        "--step",
        args.step,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
    ]


def worker(argv: list[str]) -> None:
    """One of our processes: builds the workload at `--config`, times `--mode`, prints the JSON line."""
    from benchmarks.peers import protocol

    description = "our side of benchmarks.side_by_side"
    p = protocol.parser(description)
    p.add_argument("workload")
    p.add_argument("--mode", choices=MODES, default="function")
    args = protocol.parse(description, argv, p)
    name, mode = args.workload, args.mode
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from benchmarks import measure, registry
    from benchmarks import steps as steps_lib

    workload = registry.select([name])[0]
    prepared = measure.prepare(workload.build, dict(args.config), measure.Settings())
    step = steps_lib.single_device(prepared.case, args.step, mode)
    timing = protocol.measure(lambda: steps_lib.to_host(step(prepared.inputs)), args.steps, args.warmup)
    protocol.report(
        f"ours_{mode}",
        args,
        timing,
        mode=mode,
        threads={
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        versions={"python": sys.version.split()[0], "tensorflow": tf.__version__},
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.side_by_side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("workload", nargs="?", help="our registered workload (e.g. dnc)")
    p.add_argument("--peer", help=f"the peer to compare with: {', '.join(PEERS)}")
    p.add_argument(
        "--peer-python", default=os.environ.get("PEER_PYTHON"), help="the peer venv's python (or $PEER_PYTHON)"
    )
    p.add_argument(
        "--peer-dir", help="a clone of the peer's repository, for peers run from one (torch_gqn, biggan_pytorch)"
    )
    p.add_argument("--preset", default="quick", help="the workload's size preset (smoke, quick, paper; default quick)")
    p.add_argument("--config", help="a JSON object of size arguments overriding the preset's")
    p.add_argument("--modes", default="function,xla", help="our modes, comma-separated (default function,xla)")
    p.add_argument("--step", choices=("train", "forward"), default="train", help="the step (default train)")
    p.add_argument("--pairs", type=int, default=5, help="alternating pairs of processes (default 5)")
    p.add_argument("--steps", type=int, default=5, help="timed calls per process (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls after the first, per process (default 2)")
    p.add_argument("--threads", type=int, default=0, help="threads for both sides; 0 keeps each library's default")
    p.add_argument("--timeout", type=float, default=None, help="seconds per process (default: none)")
    p.add_argument("--out", help="also write every figure to this JSON file")
    p.add_argument("--list", action="store_true", help="list the peers, their workloads and how to install them")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1:])
        return 0
    p = parser()
    args = p.parse_args(argv)
    if args.list:
        for name, peer in PEERS.items():
            print(
                f"{name}: against workload {peer.workload!r}; benchmarks/peers/{peer.script}\n  install: {peer.install}"
            )
        return 0
    if not args.peer or args.peer not in PEERS:
        p.error(f"--peer must be one of {', '.join(PEERS)}, got {args.peer!r}")
    peer = PEERS[args.peer]
    workload = args.workload or peer.workload
    if not args.peer_python:
        p.error(f"--peer-python (or $PEER_PYTHON) is required: the python of a venv with the peer.\n  {peer.install}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        p.error(f"--modes must be a comma-separated subset of {MODES}, got {args.modes!r}")
    for flag in ("pairs", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    config = _config(workload, args, p)
    sides = {f"ours_{m}": ours_command(workload, m, config, args) for m in modes}
    sides[args.peer] = [args.peer_python, os.path.join(PEERS_DIR, peer.script), *_common(config, args)]
    if args.peer_dir:
        sides[args.peer] += ["--peer-dir", os.path.abspath(args.peer_dir)]
    started = time.time()
    result = compare(sides, args.peer, args.pairs, args.timeout, log=sys.stderr)
    result.update(
        command=" ".join(["python -m benchmarks.side_by_side", *argv]),
        workload=workload,
        peer=args.peer,
        config=config,
        seconds=time.time() - started,
    )
    print(_table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def _config(workload: str, args: argparse.Namespace, p: argparse.ArgumentParser) -> dict:
    """The preset's size of `workload`, updated by `--config` (read from the registry in a worker-free way)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from benchmarks import registry

    try:
        config = registry.select([workload])[0].size(args.preset)
    except KeyError as e:
        p.error(str(e))
    if args.config:
        try:
            extra = json.loads(args.config)
        except json.JSONDecodeError as e:
            p.error(f"--config is not JSON ({e})")
        unknown = sorted(set(extra) - set(config))
        if unknown:
            p.error(f"--config has keys {unknown} that workload {workload!r} does not take; it takes {sorted(config)}")
        config.update(extra)
    return config


def _table(result: dict) -> str:
    peer = result["peer"]
    pairs = len(result["pairs"])
    lines = [f"{result['workload']} {json.dumps(result['config'])}, {pairs} pairs"]
    for prefix, what in (("", "wall clock"), ("cpu_", "CPU time of the process")):
        if prefix + "ratios" not in result:
            continue
        lines += [
            "",
            f"| side | {what} per step (ms, median over pairs) | ratio ours / peer: median [95% CI] (min, max) |",
            "|---|---|---|",
        ]
        for name, seconds in result[prefix + "per_step_s"].items():
            r = result[prefix + "ratios"].get(name)
            text = (
                ""
                if r is None
                else f"{r['median']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['min']:.3f}, {r['max']:.3f})"
            )
            lines.append(f"| {name if name != peer else peer + ' (peer)'} | {seconds * 1e3:.1f} | {text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
