"""Timing entries: the first call and warm-up, interleaved rounds, and their figures.

An *entry* is one implementation of one step in one mode. `first_calls` makes its first
call (tracing and compiling included) and the warm-up calls, with the allocator's peak
reset before and read after. `rounds` then times all of a step's entries in rotating
rounds. `ratio`, `timing_fields` and `memory_fields` turn the result into the JSON's
figures.
"""

import dataclasses
import gc
import math
import time
from collections.abc import Callable

import tensorflow as tf

from benchmarks import machine, stats


@dataclasses.dataclass
class Entry:
    """One implementation of one step in one mode, and what was measured of it."""

    implementation: str
    mode: str
    call: Callable[[], object]
    first_call_s: float | None = None
    peak_memory_bytes: int | None = None
    resident_bytes: int | None = None
    estimate_s: float = 0.0
    number: int = 1
    times: list[float] = dataclasses.field(default_factory=list)
    interleaved: bool = True
    error: str | None = None


def describe_error(e: BaseException) -> str:
    """`Type: message`, whitespace collapsed, cut to a table-friendly length."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:300]


def _memory_info(device: str) -> dict | None:
    try:
        return tf.config.experimental.get_memory_info(machine.short_device(device))
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None


def _reset_memory(device: str) -> None:
    try:
        tf.config.experimental.reset_memory_stats(machine.short_device(device))
    except (ValueError, RuntimeError, tf.errors.OpError):
        pass


def first_calls(entry: Entry, warmup: int, device: str, limit: float) -> None:
    """The first call (timed), then the warm-up calls; the peak memory over all of them.

    A call slower than `limit` cannot be repeated within the cap: after one call past
    the first, such an entry keeps that call as its only timing and is left out of the
    rounds (`interleaved` False).
    """
    # Garbage left by earlier entries (reference cycles holding tensors) counts as
    # resident at the reset; freed during this entry's calls, it would hide what they
    # allocate below the reset's level.
    gc.collect()
    _reset_memory(device)
    before = _memory_info(device)
    try:
        start = time.perf_counter()
        entry.call()
        entry.first_call_s = time.perf_counter() - start
        entry.estimate_s = entry.first_call_s
        for _ in range(max(warmup, 1 if entry.first_call_s > limit else 0)):
            start = time.perf_counter()
            entry.call()
            entry.estimate_s = time.perf_counter() - start
            if entry.estimate_s > limit:
                entry.times, entry.interleaved = [entry.estimate_s], False
                break
    except Exception as e:  # noqa: BLE001 -- an unsupported mode is a result, not a crash
        entry.error = describe_error(e)
        return
    after = _memory_info(device)
    if before is not None and after is not None:
        entry.resident_bytes = int(before["current"])
        entry.peak_memory_bytes = int(after["peak"])


def rounds(entries: list[Entry], min_repeats: int, max_repeats: int, repeat_seconds: float, deadline: float) -> bool:
    """Times the entries in rotating rounds; returns whether the deadline cut the rounds short.

    Each round times `number` back-to-back calls of every entry, `number` chosen from the
    warm-up so that they last about `repeat_seconds`; the order rotates by one each
    round. Rounds stop at `max_repeats`, or at `deadline` once `min_repeats` are done.
    """
    for entry in entries:
        entry.number = max(1, math.ceil(repeat_seconds / max(entry.estimate_s, 1e-6)))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one entry's timing would bias it (as timeit does)
    try:
        for r in range(max_repeats):
            shift = r % len(entries)
            for entry in entries[shift:] + entries[:shift]:
                entry.times.append(stats.time_calls(entry.call, entry.number))
            if r + 1 >= min_repeats and time.perf_counter() >= deadline:
                return r + 1 < max_repeats
    finally:
        if gc_was_enabled:
            gc.enable()
    return False


def ratio(numerator: Entry, denominator: Entry) -> dict:
    """Time of `numerator` over time of `denominator`: paired over rounds when both were interleaved.

    Otherwise (an entry timed once) the ratio of the medians, with no interval (n = 1).
    """
    if numerator.interleaved and denominator.interleaved:
        return dataclasses.asdict(stats.ratio(numerator.times, denominator.times))
    value = stats.Summary.of(numerator.times).median / stats.Summary.of(denominator.times).median
    return {"median": value, "low": value, "high": value, "n": 1}


def timing_fields(entry: Entry | None) -> dict:
    """The timing fields of one entry (None where it did not run, or failed)."""
    if entry is None or entry.error is not None or not entry.times:
        return {
            "first_call_s": None if entry is None else entry.first_call_s,
            "median_s": None,
            "q1_s": None,
            "q3_s": None,
            "iqr_s": None,
            "repeats": 0,
            "calls_per_repeat": None,
            "interleaved": None,
        }
    summary = stats.Summary.of(entry.times)
    return {
        "first_call_s": entry.first_call_s,
        "median_s": summary.median,
        "q1_s": summary.q1,
        "q3_s": summary.q3,
        "iqr_s": summary.iqr,
        "repeats": summary.n,
        "calls_per_repeat": entry.number,
        "interleaved": entry.interleaved,
    }


def memory_fields(entry: Entry | None) -> dict:
    """Peak bytes over the first calls, bytes resident before them, and the difference."""
    if entry is None or entry.peak_memory_bytes is None:
        return {"peak_memory_bytes": None, "resident_bytes": None, "step_memory_bytes": None}
    return {
        "peak_memory_bytes": entry.peak_memory_bytes,
        "resident_bytes": entry.resident_bytes,
        "step_memory_bytes": entry.peak_memory_bytes - entry.resident_bytes,
    }
