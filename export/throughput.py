"""In-process ONNX Runtime throughput: the ceiling any server around the same graph can approach.

Figures are flows per second through ``make_session`` (the serving configuration, two threads by default),
timed on real preprocessed flows. The machines are shared, so the fp32/INT8 comparison interleaves short
rounds of both models and takes medians: a neighbour's burst then hits both, not just one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moe_ids.contract import ONNX_INPUTS, ONNX_OUTPUTS
from moe_ids.onnx_runtime import make_session

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


def _timed_rounds(session, feeds: list[dict[str, np.ndarray]], seconds: float) -> tuple[int, float]:
    """Run feeds round-robin for about ``seconds``; (flows done, elapsed seconds)."""
    outputs = list(ONNX_OUTPUTS)
    done, i = 0, 0
    start = time.perf_counter()
    while True:
        feed = feeds[i % len(feeds)]
        session.run(outputs, feed)
        done += len(feed[ONNX_INPUTS[0]])
        i += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed


def measure_onnx_throughput(path: str | Path, x_inputs: Sequence[np.ndarray], batch: int = 1024,
                            seconds: float = 3.0, threads: int = DEFAULT_THREADS, warmup: int = 3) -> float:
    """Flows/s of the model at ``path`` on (tabular, temporal, mask) arrays, in batches of ``batch``."""
    session = make_session(path, threads=threads)
    feeds = _batches(x_inputs, batch)
    for k in range(warmup):
        session.run(list(ONNX_OUTPUTS), feeds[k % len(feeds)])
    done, elapsed = _timed_rounds(session, feeds, seconds)
    return done / elapsed


def compare_throughput(paths: dict[str, str | Path], x_inputs: Sequence[np.ndarray], batch: int = 1024,
                       seconds: float = 3.0, threads: int = DEFAULT_THREADS, rounds: int = 5) -> dict[str, float]:
    """Median flows/s of several models measured in interleaved rounds (same data, same moment)."""
    feeds = _batches(x_inputs, batch)
    sessions = {name: make_session(p, threads=threads) for name, p in paths.items()}
    for session in sessions.values():
        for k in range(3):
            session.run(list(ONNX_OUTPUTS), feeds[k % len(feeds)])
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    per_round = seconds / rounds
    for _ in range(rounds):
        for name, session in sessions.items():
            done, elapsed = _timed_rounds(session, feeds, per_round)
            rates[name].append(done / elapsed)
    return {name: statistics.median(r) for name, r in rates.items()}
