"""In-process ONNX Runtime throughput: the ceiling any server around the same graph can approach.

Figures are flows per second through ``make_session`` (the serving configuration, two threads by default),
timed on real preprocessed flows. The machines are shared, so the fp32/INT8 comparison interleaves short
rounds of both models and takes medians: a neighbour's burst then hits both, not just one. It also counts
flows per CPU-second of this process, which other processes' load barely moves: on a busy machine that ratio
is the trustworthy one, and the load average is reported beside the figures.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moe_ids.core.contract import ONNX_INPUTS, ONNX_OUTPUTS
from moe_ids.core.onnx_runtime import make_session

DEFAULT_THREADS = 2


def _batches(x_inputs: Sequence[np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    """Feeds of exactly ``batch`` rows, tiling the given rows when there are fewer."""
    n = len(x_inputs[0])
    if n == 0:
        raise ValueError("no flows to time")
    reps = -(-batch // n)
    arrays = [np.ascontiguousarray(np.tile(a, (reps, 1)) if reps > 1 else a, dtype=np.float32) for a in x_inputs]
    total = len(arrays[0])
    starts = range(0, max(total - batch, 0) + 1, batch)
    return [{name: a[s:s + batch] for name, a in zip(ONNX_INPUTS, arrays, strict=True)} for s in starts]


def _timed_rounds(session, feeds: list[dict[str, np.ndarray]], seconds: float) -> tuple[int, float, float]:
    """Run feeds round-robin for about ``seconds``; (flows done, elapsed seconds, CPU seconds of this process)."""
    outputs = list(ONNX_OUTPUTS)
    done, i = 0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        feed = feeds[i % len(feeds)]
        session.run(outputs, feed)
        done += len(feed[ONNX_INPUTS[0]])
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed, max(time.process_time() - cpu_start, 1e-9)


def measure_onnx_throughput(path: str | Path, x_inputs: Sequence[np.ndarray], batch: int = 1024,
                            seconds: float = 3.0, threads: int = DEFAULT_THREADS, warmup: int = 3,
                            providers=None) -> float:
    """Flows/s of the model at ``path`` on (tabular, temporal, mask) arrays, in batches of ``batch``.

    ``providers`` picks the ONNX Runtime execution providers (CPU by default, see ``make_session``).
    """
    session = make_session(path, threads=threads, providers=providers)
    feeds = _batches(x_inputs, batch)
    for k in range(warmup):
        session.run(list(ONNX_OUTPUTS), feeds[k % len(feeds)])
    done, elapsed, _ = _timed_rounds(session, feeds, seconds)
    return done / elapsed


def compare_throughput(paths: dict[str, str | Path], x_inputs: Sequence[np.ndarray], batch: int = 1024,
                       seconds: float = 3.0, threads: int = DEFAULT_THREADS, rounds: int = 6,
                       providers: dict[str, Any] | None = None) -> dict[str, dict]:
    """Several models measured in interleaved rounds (same data, same moment), per model:

    ``flows_per_s`` (median over rounds, wall clock), ``best_flows_per_s`` (fastest round) and
    ``flows_per_cpu_s`` (median flows per CPU-second of this process).

    ``providers`` maps a name of ``paths`` to its execution providers (as for ``make_session``; CPU for names
    not in it), so one graph can be timed on the CUDA and the CPU provider in the same rounds.
    """
    feeds = _batches(x_inputs, batch)
    providers = providers or {}
    sessions = {name: make_session(p, threads=threads, providers=providers.get(name)) for name, p in paths.items()}
    for session in sessions.values():
        for k in range(3):
            session.run(list(ONNX_OUTPUTS), feeds[k % len(feeds)])
    wall: dict[str, list[float]] = {name: [] for name in sessions}
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    per_round = seconds / (rounds * len(sessions))
    for _ in range(rounds):
        for name, session in sessions.items():
            done, elapsed, cpu_s = _timed_rounds(session, feeds, per_round)
            wall[name].append(done / elapsed)
            cpu[name].append(done / cpu_s)
    return {name: {"flows_per_s": statistics.median(wall[name]), "best_flows_per_s": max(wall[name]),
                   "flows_per_cpu_s": statistics.median(cpu[name])} for name in sessions}


def load_average() -> float | None:
    """One-minute load average (None where the OS has none): context for wall-clock figures."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
