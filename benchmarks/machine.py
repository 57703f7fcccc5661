"""What a result was measured on: the machine, its load, the software and the commit."""

import os
import platform
import subprocess
import sys
from typing import Any

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo on Linux, else what `platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where that is unavailable."""
    cores, physical = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    cores.add((physical, value.strip()))
    except OSError:
        return None
    return len(cores) or None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (as `uptime` shows them), where the OS has them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def git_commit() -> dict[str, Any]:
    """The checked-out commit and whether the working tree differs from it (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 -- a missing or broken peer is just not reported
        return None


def short_device(device: str) -> str:
    """ "/job:localhost/.../device:CPU:0" -> "CPU:0", the form the memory API takes."""
    return ":".join(device.split(":")[-2:])


def compute_device() -> str:
    """The device single-device steps run on: the first accelerator TensorFlow sees, else CPU:0."""
    for kind in ("TPU", "GPU"):
        devices = tf.config.list_logical_devices(kind)
        if devices:
            return devices[0].name
    return tf.config.list_logical_devices("CPU")[0].name


def describe() -> dict[str, Any]:
    """Everything about where and with what a run happened, for the JSON output."""
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "sonnet": _version("sonnet"),
        "keras": _version("keras"),
        "git": git_commit(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "compute_device": compute_device(),
    }
